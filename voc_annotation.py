"""Split VOCdevkit/VOC2007 into train/val/test lists and audit the labels.

Writes VOC2007/ImageSets/Segmentation/{trainval,train,val,test}.txt from the label PNGs in
VOC2007/SegmentationClass, then checks every label (and its image) for the usual traps:
0/255 masks, colour labels, out-of-range values, size mismatches, missing or broken files.
Fatal problems exit with an error; `--fix_labels True` repairs 0/255 and VOC-colour labels.
"""

from utils.config import load_config
from utils.dataset_audit import DatasetError, audit_dataset, fix_label_files, write_splits

# ------------------------------------------------------------------------------------------#
#   To add a test set, lower trainval_percent. The default trainval : test = 10 : 0 and
#   train : val = 9 : 1.
# ------------------------------------------------------------------------------------------#
trainval_percent = 1  # fraction of the labelled images used for train + val (the rest: test)
train_percent = 0.9  # fraction of train + val used for training (the rest: validation)
# ------------------------------------------------------------------------------------------#
#   Folder of the VOC dataset (images in VOC2007/JPEGImages, labels in SegmentationClass)
# ------------------------------------------------------------------------------------------#
VOCdevkit_path = 'VOCdevkit'
seed = 0  # random seed of the split; the same files and seed always give the same split
num_classes = None  # classes + background (e.g. 21); when set, label values >= it are reported
fix_labels = False  # rewrite 0/255 masks as 0/1 and VOC-colour labels as indices (backup first)


def main(argv=None) -> None:
    cfg = load_config(__file__, argv)
    print("Generate txt in ImageSets.")
    try:
        splits = write_splits(cfg.VOCdevkit_path, cfg.trainval_percent, cfg.train_percent,
                              cfg.seed)
    except DatasetError as error:
        raise SystemExit(f"error: {error}") from None
    print("train and val size", len(splits["trainval"]))
    print("train size", len(splits["train"]))
    print("Generate txt in ImageSets done.")

    print("Check datasets format, this may take a while.")
    print("检查数据集格式是否符合要求，这可能需要一段时间。")
    report = audit_dataset(cfg.VOCdevkit_path, cfg.num_classes)
    report.print_table()
    if cfg.fix_labels and (report.binary_labels or report.colour_labels):
        for message in fix_label_files(report):
            print(message)
        print("Checking the labels again after the fix.")
        report = audit_dataset(cfg.VOCdevkit_path, cfg.num_classes)
        report.print_table()
    elif cfg.fix_labels:
        print("--fix_labels: no 0/255 or colour labels found, nothing was changed.")
    report.print_verdicts(include_fatal=False)
    if report.fatal:
        raise SystemExit(report.error_message())


if __name__ == "__main__":
    main()
