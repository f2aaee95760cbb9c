#pragma once
// Registry entries, one per operator, each defined in its operator's file.
// Adding an operator: declare its entry here and list it in registry.cpp.

#include "opforge/operators/registry.hpp"

namespace opforge {

OperatorEntry l0_smooth_entry();
OperatorEntry wls_smooth_entry();
OperatorEntry rtv_smooth_entry();
OperatorEntry rolling_guidance_entry();
OperatorEntry local_laplacian_entry();
OperatorEntry style_transfer_entry();
OperatorEntry weighted_median_entry();
OperatorEntry resize_bicubic_entry();
OperatorEntry sr_bicubic_entry();
OperatorEntry gaussian_noise_entry();
OperatorEntry jpeg_degrade_entry();
OperatorEntry dehaze_dark_channel_entry();
OperatorEntry dehaze_nonlocal_entry();

}  // namespace opforge
