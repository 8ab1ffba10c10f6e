"""Split Medical_Datasets into train/val/test lists and audit the masks.

Writes ImageSets/Segmentation/{trainval,train,val,test}.txt from the masks in Labels/, then
checks every mask (and its image in Images/): 0/255 masks are expected here, a pixel whose value
is at most 127.5 (the dark membrane) being class 1; other grey values are reported.
"""

from utils.annotation import run_annotation
from utils.cli import run
from utils.config import load_config

# ---- Split ------------------------------------------------------------------------------------
# The original trains on every image (train_percent = 1: no validation, checkpoints follow the
# training loss). Lower train_percent, e.g. to 0.9, to get val_loss, mIoU and Dice during
# training and a val split for get_miou.py.

# Fraction of the labelled images used for train + val (the rest: test).
trainval_percent = 1
# Fraction of train + val used for training (the rest: validation).
train_percent = 1
# Folder of the dataset (slices in Images/, 0/255 masks in Labels/).
VOCdevkit_path = 'Medical_Datasets'
# Random seed of the split; the same files and seed always give the same split.
seed = 0


def main(argv: list[str] | None = None) -> None:
    run_annotation(load_config(__file__, argv), dataset_layout="medical")


if __name__ == "__main__":
    run(main)
