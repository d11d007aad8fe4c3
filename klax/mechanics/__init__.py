"""Hyperelasticity toolkit: kinematics, stresses, load cases and potentials."""

from ._baselines import (
    AbstractIsotropicPotential as AbstractIsotropicPotential,
    MooneyRivlin as MooneyRivlin,
    NeoHooke as NeoHooke,
    Ogden as Ogden,
    VolumetricPenalty as VolumetricPenalty,
)
from ._kinematics import (
    cofactor as cofactor,
    invariants as invariants,
    isochoric_invariants as isochoric_invariants,
    jacobian as jacobian,
    left_cauchy_green as left_cauchy_green,
    polyconvex_isochoric_invariants as polyconvex_isochoric_invariants,
    right_cauchy_green as right_cauchy_green,
    structural_tensor as structural_tensor,
    transverse_invariants as transverse_invariants,
)
from ._loadcases import (
    LOAD_CASES as LOAD_CASES,
    CompressibleLoadCase as CompressibleLoadCase,
    compressible_load_case as compressible_load_case,
    equibiaxial as equibiaxial,
    isotropic_nominal_stress_11 as isotropic_nominal_stress_11,
    load_case_stretches as load_case_stretches,
    nominal_stress as nominal_stress,
    nominal_stress_11 as nominal_stress_11,
    pure_shear as pure_shear,
    stretches_to_F as stretches_to_F,
    uniaxial as uniaxial,
)
from ._stress import (
    cauchy as cauchy,
    first_piola as first_piola,
    kirchhoff as kirchhoff,
    second_piola as second_piola,
    tangent as tangent,
    tangent_9x9 as tangent_9x9,
    voigt_tangent as voigt_tangent,
)
