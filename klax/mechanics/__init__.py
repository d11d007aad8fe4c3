"""Hyperelasticity toolkit: kinematics, stresses, load cases and potentials."""

from ._abaqus import (
    export_abaqus as export_abaqus,
    export_uhyper as export_uhyper,
    export_umat as export_umat,
)
from ._baselines import (
    AbstractIsotropicPotential as AbstractIsotropicPotential,
    MooneyRivlin as MooneyRivlin,
    NeoHooke as NeoHooke,
    Ogden as Ogden,
    VolumetricPenalty as VolumetricPenalty,
    baseline_constants as baseline_constants,
    linear_parameters as linear_parameters,
)
from ._calibration import (
    StressData as StressData,
    StressLoss as StressLoss,
    build_model as build_model,
    calibrate_seeds as calibrate_seeds,
    curve_r2 as curve_r2,
    fit_baseline as fit_baseline,
    invariant_scales as invariant_scales,
    load_model as load_model,
    predict_nominal_stress_11 as predict_nominal_stress_11,
    predict_stress as predict_stress,
    residuals as residuals,
    save_model as save_model,
    stress_data as stress_data,
    stress_loss as stress_loss,
    stress_scale as stress_scale,
    train_seeds as train_seeds,
)
from ._data import (
    Curve as Curve,
    DataError as DataError,
    FitMetrics as FitMetrics,
    LoadCurve as LoadCurve,
    Measurements as Measurements,
    concatenate_measurements as concatenate_measurements,
    fit_metrics as fit_metrics,
    parse_curves as parse_curves,
    parse_measurements as parse_measurements,
    parse_selection as parse_selection,
    read_curves as read_curves,
    read_measurements as read_measurements,
)
from ._felupe import (
    FECheckResult as FECheckResult,
    FElupeMaterial as FElupeMaterial,
    FEPlateResult as FEPlateResult,
    FEUniaxialResult as FEUniaxialResult,
    fe_check as fe_check,
    fe_plate_with_hole as fe_plate_with_hole,
    fe_uniaxial_check as fe_uniaxial_check,
    felupe_material as felupe_material,
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
from ._leastsquares import (
    LeastSquaresResult as LeastSquaresResult,
    levenberg_marquardt as levenberg_marquardt,
    refine_least_squares as refine_least_squares,
    solve_linear_parameters as solve_linear_parameters,
)
from ._loadcases import (
    ALL_LOAD_CASES as ALL_LOAD_CASES,
    LOAD_CASES as LOAD_CASES,
    STRESS_COMPONENTS as STRESS_COMPONENTS,
    CompressibleLoadCase as CompressibleLoadCase,
    biaxial as biaxial,
    biaxial_nominal_stress as biaxial_nominal_stress,
    compressible_biaxial as compressible_biaxial,
    compressible_load_case as compressible_load_case,
    compressible_simple_shear as compressible_simple_shear,
    equibiaxial as equibiaxial,
    isotropic_biaxial_nominal_stress as isotropic_biaxial_nominal_stress,
    isotropic_nominal_stress_11 as isotropic_nominal_stress_11,
    isotropic_simple_shear_nominal_stress as isotropic_simple_shear_nominal_stress,
    load_case_stretches as load_case_stretches,
    nominal_stress as nominal_stress,
    nominal_stress_11 as nominal_stress_11,
    pure_shear as pure_shear,
    simple_shear as simple_shear,
    simple_shear_nominal_stress as simple_shear_nominal_stress,
    stretches_to_F as stretches_to_F,
    uniaxial as uniaxial,
)
from ._networks import (
    PartiallyMonotoneFICNN as PartiallyMonotoneFICNN,
    reparametrize_nonnegative as reparametrize_nonnegative,
    softplus_positive as softplus_positive,
)
from ._potentials import (
    INVARIANT_SETS as INVARIANT_SETS,
    POLYCONVEX_AT_ANY_J as POLYCONVEX_AT_ANY_J,
    CompressiblePANN as CompressiblePANN,
    IncompressiblePANN as IncompressiblePANN,
    TransverselyIsotropicPANN as TransverselyIsotropicPANN,
    pann_inputs as pann_inputs,
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
