"""Train U-Net on a VOC-format dataset: a frozen-backbone phase, then the whole network.

Edit the parameters below or override any of them, e.g.
`python train.py --num_classes 4 --model_path "" --input_shape 256 256`.
Checkpoints, loss/mIoU curves, TensorBoard events and a CSV log are written to save_dir.
"""

import numpy as np

from utils.cli import run
from utils.config import load_config
from utils.training import train

# ---- Model ------------------------------------------------------------------------------------
# GPUs to train on, e.g. [0, 1]; with several, the batch sizes below are global batches split
# across them (MirroredStrategy; DataParallel on JAX). Without a GPU, training runs on the CPU.
# With TF_CONFIG set, every machine of the cluster runs this script (MultiWorkerMirroredStrategy;
# see README).
train_gpu = [0, ]
# Number of classes + 1 (background counts), e.g. 2 object classes -> 3.
num_classes = 21
# Backbone: "vgg" or "resnet50".
backbone = "vgg"
# Weights to start from ("" for random init). Training from scratch works poorly: start from
# backbone (ImageNet) or full-model weights. The head is skipped if its class count differs.
model_path = "model_data/unet_vgg_voc.h5"
# Input size [h, w], multiples of 32.
input_shape = [512, 512]

# ---- Training phases --------------------------------------------------------------------------
# Two phases: first the backbone is frozen (less memory, faster), then everything trains.
# Use 100-300 epochs in total (120 with SGD from backbone-only weights). resnet50 needs batch
# sizes > 1 because of batch normalisation.

# First epoch to run; above Freeze_Epoch it skips the frozen phase.
Init_Epoch = 0
# Epochs of the frozen phase.
Freeze_Epoch = 50
# Batch size while frozen (1-2x Unfreeze_batch_size).
Freeze_batch_size = 2
# Total epochs (the end of the unfrozen phase).
UnFreeze_Epoch = 100
# Batch size after unfreezing.
Unfreeze_batch_size = 2
# Run the frozen phase first; False trains everything from Init_Epoch on.
Freeze_Train = True

# ---- Optimizer --------------------------------------------------------------------------------
# Maximum learning rate: adam 1e-4, sgd 1e-2 (both scaled by batch size / 16 and clamped).
Init_lr = 1e-4
# Minimum learning rate, 1% of the maximum by default.
Min_lr = Init_lr * 0.01
# Optimizer: "adam" or "sgd".
optimizer_type = "adam"
# Adam beta_1 or SGD momentum.
momentum = 0.9
# L2 weight decay on conv kernels: 0 for adam, 1e-4 for sgd.
weight_decay = 0
# Learning-rate decay: "cos" or "step".
lr_decay_type = 'cos'

# ---- Outputs ----------------------------------------------------------------------------------
# Save ep%03d-loss...-val_loss....weights.h5 every save_period epochs.
save_period = 5
# Folder for checkpoints and logs.
save_dir = 'logs'
# Compute the val mIoU during training (slower), every eval_period epochs.
eval_flag = True
# Epochs between mIoU evaluations.
eval_period = 5
# What best_epoch_weights follows: "val_loss" (lowest, as the original) or "val_miou" (highest;
# needs eval_flag, and is checked every eval_period epochs).
best_metric = "val_loss"

# ---- Data and loss ----------------------------------------------------------------------------
# Dataset root.
VOCdevkit_path = 'VOCdevkit'
# Add dice loss: for few classes, or many classes with batch size >= 10.
dice_loss = False
# Use focal loss against class imbalance.
focal_loss = False
# Per-class loss weights (length num_classes).
cls_weights = np.ones([num_classes], np.float32)
# Kept from the original; the input pipeline reads and augments in parallel threads anyway.
num_workers = 1
# Batch norm (resnet50): before each validation, re-estimate its statistics from this many
# training images instead of the moving averages, which lag far behind the weights when
# training from scratch at small batches. 0 = off, as the original. One device only.
precise_bn_images = 0

# ---- Run --------------------------------------------------------------------------------------
# Seed for Python, NumPy and the Keras backend: same seed, same initial weights and batches.
seed = 11
# Continue the interrupted run in save_dir (weights, optimizer, epoch, curves).
resume = False
# Mixed precision: "float32" (off), "float16" (NVIDIA GPUs) or "bfloat16" (recent GPUs/CPUs).
mixed_precision = "float32"


def main(argv: list[str] | None = None) -> None:
    train(load_config(__file__, argv))


if __name__ == "__main__":
    run(main)
