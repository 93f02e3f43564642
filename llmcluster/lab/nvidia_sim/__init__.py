"""LAB SIMULATION of the NVIDIA GPU node stack (stand-in hardware, packages and wheels; never deployed to production)."""
