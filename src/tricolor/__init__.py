"""tricolor: image classification and dominant colours, served by NVIDIA Triton."""
