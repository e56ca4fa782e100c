"""Quantized latents <-> bytes, shared by rover and ground. numpy + constriction only; never torch."""
