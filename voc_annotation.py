"""Split VOCdevkit/VOC2007 into train/val/test lists and audit the labels.

Writes VOC2007/ImageSets/Segmentation/{trainval,train,val,test}.txt from the label PNGs in
VOC2007/SegmentationClass, then checks every label (and its image) for the usual traps:
0/255 masks, colour labels, out-of-range values, size mismatches, missing or broken files.
Fatal problems exit with an error; `--fix_labels True` repairs 0/255 and VOC-colour labels.
"""

from utils.annotation import run_annotation
from utils.cli import run
from utils.config import load_config

# ---- Split ------------------------------------------------------------------------------------
# To add a test set, lower trainval_percent. The default trainval : test = 10 : 0 and
# train : val = 9 : 1.

# Fraction of the labelled images used for train + val (the rest: test).
trainval_percent = 1
# Fraction of train + val used for training (the rest: validation).
train_percent = 0.9
# Folder of the VOC dataset (images in VOC2007/JPEGImages, labels in SegmentationClass).
VOCdevkit_path = 'VOCdevkit'
# Random seed of the split; the same files and seed always give the same split.
seed = 0

# ---- Label audit ------------------------------------------------------------------------------
# Classes + background (e.g. 21); when set, label values >= it are reported.
num_classes: int | None = None
# Rewrite 0/255 masks as 0/1 and VOC-colour labels as indices (originals backed up first).
fix_labels = False


def main(argv: list[str] | None = None) -> None:
    run_annotation(load_config(__file__, argv))


if __name__ == "__main__":
    run(main)
