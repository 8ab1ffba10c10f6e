"""Pure functional model builders: encoders and the U-Net."""
