"""Convert labelme annotations (datasets/before/*.json) into VOC images and label PNGs.

Each `<stem>.json` gives `<jpgs_path>/<stem>.jpg` and a palette PNG `<pngs_path>/<stem>.png`
whose pixel values are the indices of the shapes' names in `classes`. labelme itself is not
needed: polygons, rectangles, circles, lines, line strips and points are drawn with PIL.
"""

from utils.cli import run
from utils.config import load_config
from utils.labelme import convert_folder

json_path = "datasets/before"  # folder of the labelme .json files
jpgs_path = "datasets/JPEGImages"  # where the images are written
pngs_path = "datasets/SegmentationClass"  # where the labels are written
# The class names used in labelme; the position in the list is the label value.
# _background_ must stay first (value 0).
classes = ["_background_", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
           "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
           "sheep", "sofa", "train", "tvmonitor"]


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(__file__, argv)
    convert_folder(cfg.json_path, cfg.jpgs_path, cfg.pngs_path, cfg.classes)


if __name__ == "__main__":
    run(main)
