"""Networks of AdaFocus (torch only): f_G, f_L, f_C, the patch crop and the GFLOPs counter."""
from .classifier import RecurrentClassifier
from .clip_model import ClipFocusModel
from .crop import (corner_centres, corner_span, crop_patches, fraction_corners, grid_corners, patch_boxes,
                   patch_corners, random_corners)
from .encoders import Encoder, EncoderSpec, build_torchvision_model, imagenet_weights_path, normalize
from .flops import StepCost, clip_cost, count_gmacs, evaluating, full_frame_cost, global_only_cost, step_cost, tsm_costs
from .model import AdaFocusModel, ModelConfig
from .tsm import TemporalShift, add_temporal_shift, temporal_shift

__all__ = [
    "AdaFocusModel", "ClipFocusModel", "Encoder", "EncoderSpec", "ModelConfig", "RecurrentClassifier", "StepCost",
    "TemporalShift", "add_temporal_shift", "build_torchvision_model", "clip_cost", "corner_centres", "count_gmacs", "crop_patches", "evaluating",
    "full_frame_cost", "global_only_cost", "grid_corners", "imagenet_weights_path", "normalize",
    "corner_span", "fraction_corners", "patch_boxes", "patch_corners", "random_corners", "step_cost", "temporal_shift", "tsm_costs",
]
