"""Print the U-Net's layer table, parameter counts and GFLOPs for one input size."""

from nets.unet import Unet
from utils.cli import run
from utils.config import load_config
from utils.flops import count_flops
from utils.settings import check_settings

# [height, width] of the network input, multiples of 32.
input_shape = [512, 512]
# Number of classes + 1 (background); 21 for VOC.
num_classes = 21
# vgg or resnet50.
backbone = "vgg"


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(__file__, argv)
    check_settings(cfg)
    model = Unet([*cfg.input_shape, 3], cfg.num_classes, cfg.backbone)
    model.summary()  # ends with the total, trainable and non-trainable parameter counts
    print("Total GFLOPs: %.3fG" % (count_flops(model) / 1e9))


if __name__ == "__main__":
    run(main)
