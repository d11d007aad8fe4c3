"""Throughput of `klax.fit_ensemble` against sequential `klax.fit` calls.

The task: the Treloar potential of benchmarks/treloar_fit.py (its model and
data are reused),

    W(Ī1, Ī2) = FICNN(Ī1, Ī2) - FICNN(3, 3),
    FICNN(2 -> [8, 8] -> "scalar", use_passthrough=True, non_decreasing=True),

fitted to Treloar's 25 uniaxial points (P11 by automatic differentiation, mse,
adam(2e-3), batch_size 32, log_every 1000), trained from N different
initialisations (member i: `make_model(jr.split(jr.key(0), N)[i])`) with the
batch keys `jr.split(jr.key(1), N)[i]`. All contenders compute the same N
fits (the script checks that the final losses agree):

(a) one `klax.fit_ensemble` call over the N-member ensemble;
(b) N sequential `klax.fit` calls, each given a fresh `optax.adam(2e-3)`, as
    a loop over keys is usually written; each call compiles its own loop;
(c) N sequential `klax.fit` calls sharing one optimizer object, so that the
    compiled loop is reused (the best case for sequential fits);
(d) (opt-in, `--only ...d`) as (a), with the CPU split into one JAX device
    per core (`jax_num_cpu_devices`) and the members spread over them
    (`mesh="all"`): member parallelism on a multi-core CPU;
(e) (opt-in, `--only ...e`) the floor of (a): a hand-written loop, the N
    members' adam updates vmapped and fused 1000 steps per `lax.scan` call on
    the whole data (no shuffling, guard or logging). No ensemble fit can beat
    it on the same device, so (e)/(b) bounds the ratio (a)/(b) reachable here.

Every run is a fresh subprocess (timed from the start of the training code,
so compilation is included but not Python's imports), which also gives each
contender its own peak resident memory (ru_maxrss). Runs are interleaved
(a, b, c, a, b, c, ...). Because (b) costs one compilation per fit, it is
timed on `--sequential-sample` of the N fits and scaled to N (each fit is
independent and costs the same); pass `--sequential-sample 0` for all N.

Throughput is member-steps per second, N * steps / wall time. Target:
(a) >= 20x (b).

Run: `python benchmarks/ensemble.py [--quick] [--members N ...] [--steps S]
[--runs R] [--only abc]`. `--quick`: 8 members, 500 steps, 1 run. Several
`--members` values (e.g. `--members 1024 8192 --only a` on a GPU) report
(a) for each.
"""

import argparse
import functools as ft
import json
import os
import statistics
import subprocess
import sys
import time

LEARNING_RATE = 2e-3
BATCH_SIZE = 32
LOG_EVERY = 1000


def child(contender: str, members: int, steps: int, count: int) -> None:
    """Run one contender in this process; print a JSON line with the results."""
    import resource

    os.environ.setdefault("EQX_ON_ERROR", "nan")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax

    if contender == "d":  # one CPU device per core, before JAX uses a device
        jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np
    import optax
    from treloar_fit import load_uniaxial, make_model

    import klax

    x, y = load_uniaxial()
    model_keys = jr.split(jr.key(0), members)
    fit_keys = jr.split(jr.key(1), members)
    log_every = min(LOG_EVERY, steps)
    per_fit: list[float] = []
    start, start_cpu = time.perf_counter(), time.process_time()
    if contender in "ad":
        ensemble = klax.make_ensemble(make_model, members, key=jr.key(0))
        ensemble, history = klax.fit_ensemble(
            ensemble,
            (x, y),
            batch_size=BATCH_SIZE,
            steps=steps,
            optimizer=optax.adam(LEARNING_RATE),
            log_every=log_every,
            verbose=0,
            mesh="all" if contender == "d" else None,
            key=jr.key(1),
        )
        jax.block_until_ready(ensemble)
        assert history is not None
        logged = np.stack(history["loss"][1])  # (logging steps, members)
        losses = logged[-1].tolist()
        early = logged[min(1, len(logged) - 1)].tolist()
        fits = members
    elif contender == "e":
        ensemble = klax.apply(klax.make_ensemble(make_model, members, key=jr.key(0)))
        optimizer = optax.adam(LEARNING_RATE)
        params, static = eqx.partition(ensemble, eqx.is_inexact_array)
        opt_state = jax.vmap(optimizer.init)(params)
        data = (jnp.asarray(x), jnp.asarray(y))

        def update(p, o):
            grad = klax.mse.value_and_grad(eqx.combine(p, static), data, None)[1]
            updates, o = optimizer.update(grad, o, p)
            p = optax.apply_updates(p, updates)
            p = eqx.filter(klax.apply(eqx.combine(p, static)), eqx.is_inexact_array)
            return p, o

        @ft.partial(jax.jit, static_argnums=2)
        def run_chunk(p, o, length):
            def body(carry, _):
                return jax.vmap(update)(*carry), None

            return jax.lax.scan(body, (p, o), length=length)[0]

        member_losses = jax.jit(
            jax.vmap(lambda p: klax.mse(eqx.combine(p, static), data, None))
        )
        early = []
        for i in range(-(-steps // log_every)):
            length = min(log_every, steps - i * log_every)
            params, opt_state = run_chunk(params, opt_state, length)
            if i == 0:
                early = member_losses(params).tolist()
        losses = member_losses(params).tolist()
        fits = members
    else:
        shared = optax.adam(LEARNING_RATE)
        losses, early = [], []
        fits = count
        for i in range(count):
            fit_start = time.perf_counter()
            model, history = klax.fit(
                make_model(model_keys[i]),
                (x, y),
                batch_size=BATCH_SIZE,
                steps=steps,
                optimizer=optax.adam(LEARNING_RATE) if contender == "b" else shared,
                log_every=log_every,
                verbose=0,
                key=fit_keys[i],
            )
            jax.block_until_ready(model)
            assert history is not None
            logged = history["loss"][1]
            losses.append(float(logged[-1]))
            early.append(float(logged[min(1, len(logged) - 1)]))
            per_fit.append(time.perf_counter() - fit_start)
    wall = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "contender": contender,
        "wall": wall,
        "cpu": cpu,
        "per_fit": per_fit,
        "fits": fits,
        "peak_mb": peak_mb,
        "losses": losses,
        "early": early,
        "device": str(jax.devices()[0].platform),
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_child(contender: str, members: int, steps: int, count: int) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        contender,
        "--members",
        str(members),
        "--steps",
        str(steps),
        "--count",
        str(count),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"contender ({contender}) failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def full_wall(result: dict, members: int) -> float:
    """The wall time of all `members` fits, from the `fits` that were run.

    (a) runs them all. Sequential fits that each compile (b) cost the same, so
    their mean is scaled. With a shared optimizer (c) only the first fit
    compiles: first fit + mean of the others for each remaining fit.
    """
    fits, per_fit = result["fits"], result["per_fit"]
    if fits == members or not per_fit:
        return result["wall"]
    if result["contender"] == "b" or len(per_fit) == 1:
        return result["wall"] * members / fits
    rest = statistics.mean(per_fit[1:])
    return result["wall"] - sum(per_fit) + per_fit[0] + rest * (members - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 members, 500 steps")
    parser.add_argument("--members", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only", default="abc", help="contenders, e.g. 'ac' ('d', 'e' opt-in)"
    )
    parser.add_argument(
        "--sequential-sample",
        type=int,
        default=8,
        help="fits of (b) actually run, scaled to N (0: all N)",
    )
    parser.add_argument(
        "--shared-sample",
        type=int,
        default=0,
        help="fits of (c) actually run (first + mean of the rest), 0: all N",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.members[0], args.steps, args.count)
        return
    if args.quick:
        args.members, args.steps, args.runs = [8], 500, 1
        args.sequential_sample = min(args.sequential_sample or 8, 4)

    names = {
        "a": "klax.fit_ensemble, one call",
        "b": "sequential klax.fit, new optimizer each",
        "c": "sequential klax.fit, shared optimizer",
        "d": "klax.fit_ensemble, members over CPU cores",
        "e": "hand-written vmapped lax.scan (floor)",
    }
    chosen = [c for c in "abcde" if c in args.only]
    print(f"{os.cpu_count()} CPUs; {args.steps} steps per member; {args.runs} runs")
    for members in args.members:
        counts = {
            "a": members,
            "b": members
            if args.sequential_sample <= 0
            else min(members, args.sequential_sample),
            "c": members
            if args.shared_sample <= 0
            else min(members, args.shared_sample),
            "d": members,
            "e": members,
        }
        results: dict[str, list[dict]] = {c: [] for c in chosen}
        print(f"\n== {members} members")
        for run in range(args.runs):
            for c in chosen:
                r = run_child(c, members, args.steps, counts[c])
                r["scaled_wall"] = full_wall(r, members)
                r["throughput"] = members * args.steps / r["scaled_wall"]
                results[c].append(r)
                print(
                    f"run {run + 1} ({c}) {r['wall']:8.2f} s for {r['fits']} fits "
                    f"-> {r['scaled_wall']:8.2f} s for {members}, "
                    f"{r['throughput']:10.0f} member-steps/s, peak RSS "
                    f"{r['peak_mb']:.0f} MB ({r['device']})",
                    flush=True,
                )
        print(
            f"\n{'':4}{'contender':42}{'min':>10}{'median':>10}{'max':>10}"
            f"{'peak RSS':>11}   (member-steps/s; wall for all {members} fits)"
        )
        for c in chosen:
            t = [r["throughput"] for r in results[c]]
            w = [r["scaled_wall"] for r in results[c]]
            rss = max(r["peak_mb"] for r in results[c])
            print(
                f"({c}) {names[c]:42}{min(t):10.0f}{statistics.median(t):10.0f}"
                f"{max(t):10.0f}{rss:8.0f} MB   wall {min(w):.1f} / "
                f"{statistics.median(w):.1f} / {max(w):.1f} s"
            )
        if "a" in results:
            print("\nthroughput ratios (a)/(x), per run in order: min / median / max")
            for c in chosen:
                if c == "a":
                    continue
                ratios = [
                    ra["throughput"] / rc["throughput"]
                    for ra, rc in zip(results["a"], results[c], strict=True)
                ]
                target = "   target >= 20" if c == "b" else ""
                print(
                    f"  (a)/({c}) = {min(ratios):6.2f} / "
                    f"{statistics.median(ratios):6.2f} / {max(ratios):6.2f}{target}"
                )
            print("  the same with process CPU time (less sensitive to other load):")
            for c in chosen:
                if c == "a" or results[c][0]["fits"] != members:
                    continue  # only contenders that ran all members
                ratios = [
                    rc["cpu"] / ra["cpu"]
                    for ra, rc in zip(results["a"], results[c], strict=True)
                ]
                print(
                    f"  (a)/({c}) = {min(ratios):6.2f} / "
                    f"{statistics.median(ratios):6.2f} / {max(ratios):6.2f}"
                )
            if "e" in results and "b" in results:
                bound = [
                    re["throughput"] / rb["throughput"]
                    for re, rb in zip(results["e"], results["b"], strict=True)
                ]
                print(
                    f"  (e)/(b) = {min(bound):6.2f} / {statistics.median(bound):6.2f}"
                    f" / {max(bound):6.2f}   (the most (a)/(b) can reach here)"
                )
            # The same fits: compare the losses member by member, at the first
            # logging step after 0 and at the end. Over thousands of adam steps
            # round-off differences grow (e.g. a loss spike near a minimum comes
            # a few steps earlier or later), so only the early values agree
            # closely.
            first_log = min(LOG_EVERY, args.steps)
            print(f"  loss vs (a), logged at step {first_log} / at the end:")
            for c in chosen:
                if c == "a":
                    continue

                def rel(key, c=c):
                    ens, seq = results["a"][-1][key], results[c][-1][key]
                    return [
                        abs(u - v) / max(abs(v), 1e-12)
                        for u, v in zip(ens[: len(seq)], seq, strict=True)
                    ]

                early, final = rel("early"), rel("losses")
                print(
                    f"  ({c}), {len(early)} members: max rel diff {max(early):.1e} / "
                    f"median {statistics.median(final):.1e}, max {max(final):.1e}"
                )


if __name__ == "__main__":
    main()
