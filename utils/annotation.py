"""voc_annotation.py and voc_annotation_medical.py: write the train/val/test split files, then
audit (and, in the VOC layout, fix) the labels."""

from typing import Any

from utils.dataset import as_layout
from utils.dataset_audit import audit_dataset
from utils.label_fixes import fix_label_files


def run_annotation(cfg: Any, dataset_layout: str = "auto") -> dict[str, list[str]]:
    """Split the labelled ids, print the audit's table and verdicts; fatal findings raise
    DatasetError after everything has been printed. Returns the splits.

    The medical script's block has neither num_classes nor fix_labels: its masks always hold
    two classes and need no fixing."""
    layout = as_layout(cfg.VOCdevkit_path, dataset_layout)
    num_classes, fix_labels = vars(cfg).get("num_classes"), vars(cfg).get("fix_labels", False)
    print("Generate txt in ImageSets.")
    splits = layout.write_splits(cfg.trainval_percent, cfg.train_percent, cfg.seed)
    print("train and val size", len(splits["trainval"]))
    print("train size", len(splits["train"]))
    print("Generate txt in ImageSets done.")

    print("Check datasets format, this may take a while.")
    print("检查数据集格式是否符合要求，这可能需要一段时间。")
    report = audit_dataset(layout, num_classes)
    report.print_table()
    if fix_labels and (report.binary_labels or report.colour_labels):
        for message in fix_label_files(report):
            print(message)
        print("Checking the labels again after the fix.")
        report = audit_dataset(layout, num_classes)
        report.print_table()
    elif fix_labels:
        print("--fix_labels: no 0/255 or colour labels found, nothing was changed.")
    report.print_verdicts()
    report.raise_if_fatal()
    return splits
