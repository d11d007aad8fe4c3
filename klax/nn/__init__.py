"""Neural-network building blocks of klax."""

from ._linear import InputSplitLinear as InputSplitLinear, Linear as Linear

# --- networks (MLP, ICNNs, matrices): added by the networks work ---
