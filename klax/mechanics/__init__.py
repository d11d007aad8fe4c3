"""Hyperelasticity toolkit: kinematics, stresses, load cases and potentials."""

from ._baselines import (
    AbstractIsotropicPotential as AbstractIsotropicPotential,
    MooneyRivlin as MooneyRivlin,
    NeoHooke as NeoHooke,
    Ogden as Ogden,
    VolumetricPenalty as VolumetricPenalty,
)
from ._calibration import (
    StressData as StressData,
    StressLoss as StressLoss,
    build_model as build_model,
    calibrate_seeds as calibrate_seeds,
    invariant_scales as invariant_scales,
    load_model as load_model,
    predict_nominal_stress_11 as predict_nominal_stress_11,
    save_model as save_model,
    stress_data as stress_data,
    stress_loss as stress_loss,
    train_seeds as train_seeds,
)
from ._cann import (
    CANN as CANN,
    BoundedWeights as BoundedWeights,
    CANNTerm as CANNTerm,
    CompressibleCANN as CompressibleCANN,
    SparseAdamState as SparseAdamState,
    SparseWeights as SparseWeights,
    active_terms as active_terms,
    cann_config as cann_config,
    cann_terms as cann_terms,
    prox_lp as prox_lp,
    sparse_adam as sparse_adam,
    with_strength as with_strength,
)
from ._data import (
    DataError as DataError,
    FitMetrics as FitMetrics,
    LoadCurve as LoadCurve,
    fit_metrics as fit_metrics,
    parse_curves as parse_curves,
    read_curves as read_curves,
)
from ._discovery import (
    DiscoveredLaw as DiscoveredLaw,
    LawTerm as LawTerm,
    RegularisationPath as RegularisationPath,
    data_energy_scale as data_energy_scale,
    discovered_law as discovered_law,
    format_path_table as format_path_table,
    largest_strength as largest_strength,
    law_from_json as law_from_json,
    parse_formula as parse_formula,
    path_strengths as path_strengths,
    path_table as path_table,
    polish as polish,
    regularisation_path as regularisation_path,
    select_member as select_member,
    stress_residuals as stress_residuals,
    term_label as term_label,
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
from ._networks import (
    PartiallyMonotoneFICNN as PartiallyMonotoneFICNN,
    reparametrize_nonnegative as reparametrize_nonnegative,
    softplus_positive as softplus_positive,
)
from ._potentials import (
    CompressiblePANN as CompressiblePANN,
    IncompressiblePANN as IncompressiblePANN,
    TransverselyIsotropicPANN as TransverselyIsotropicPANN,
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
