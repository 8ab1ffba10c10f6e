"""Train U-Net on binary medical masks (the original's Medical_Datasets layout).

Slices go in Medical_Datasets/Images/<id>.png, 0/255 masks in Labels/<id>.png: a mask pixel
whose value is at most 127.5 (the dark membrane) is class 1, every other pixel class 0. Run
voc_annotation_medical.py first. The training itself is train.py's: same parameters, phases,
checkpoints and logs. With an empty val split (the original's train_percent = 1) there is no
validation and the checkpoints follow the training loss; with val images, val_loss, mIoU and
Dice are computed as for VOC.
"""

import numpy as np

from utils.cli import run
from utils.config import load_config
from utils.training import train

# ---- Model ------------------------------------------------------------------------------------
# GPUs to train on, e.g. [0, 1]; [] trains on the CPU.
train_gpu = [0, ]
# Two classes: 0 everything else, 1 the membrane (dark in the masks).
num_classes = 2
# Backbone: "vgg" or "resnet50".
backbone = "vgg"
# Weights to start from: the VGG16 ImageNet backbone (python -m utils.downloads --weights
# vgg16_imagenet), full-model weights, or "" for random init.
model_path = "model_data/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
# Input size [h, w], multiples of 32.
input_shape = [512, 512]

# ---- Training phases --------------------------------------------------------------------------
# A frozen-backbone phase, then the whole network, as in train.py.

# First epoch to run; above Freeze_Epoch it skips the frozen phase.
Init_Epoch = 0
# Epochs of the frozen phase.
Freeze_Epoch = 50
# Batch size while frozen.
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
# Minimum learning rate.
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
# Save a checkpoint every save_period epochs.
save_period = 5
# Folder for checkpoints and logs.
save_dir = 'logs'
# With val images: compute the val mIoU and Dice every eval_period epochs.
eval_flag = True
# Epochs between evaluations.
eval_period = 5
# With val images, what best_epoch_weights follows: "val_loss" or "val_miou". Without, the
# training loss.
best_metric = "val_loss"

# ---- Data and loss ----------------------------------------------------------------------------
# Dataset root (Images/, Labels/, ImageSets/Segmentation/).
VOCdevkit_path = 'Medical_Datasets'
# Add dice loss: it finds a thin, rare target (membranes) sooner than cross-entropy alone.
dice_loss = False
# Use focal loss against class imbalance.
focal_loss = False
# Per-class loss weights (length num_classes).
cls_weights = np.ones([num_classes], np.float32)
# Kept from the original; the input pipeline reads and augments in parallel anyway.
num_workers = 1
# resnet50: re-estimate batch-norm statistics from this many training images before each
# validation (0 = off). One device only.
precise_bn_images = 0

# ---- Run --------------------------------------------------------------------------------------
# Seed for Python, NumPy and the Keras backend.
seed = 11
# Continue the interrupted run in save_dir.
resume = False
# Mixed precision: "float32", "float16" (NVIDIA GPUs) or "bfloat16".
mixed_precision = "float32"


def main(argv: list[str] | None = None) -> None:
    train(load_config(__file__, argv), dataset_layout="medical")


if __name__ == "__main__":
    run(main)
