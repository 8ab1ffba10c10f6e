"""Print the U-Net's layer table, parameter counts and GFLOPs for one input size."""

from nets.unet import Unet
from utils.config import load_config
from utils.flops import count_flops

input_shape = [512, 512]  # [height, width] of the network input, multiples of 32
num_classes = 21  # number of classes + 1 (background); 21 for VOC
backbone = "vgg"  # vgg or resnet50


def main(argv=None):
    cfg = load_config(__file__, argv)
    model = Unet([*cfg.input_shape, 3], cfg.num_classes, cfg.backbone)
    model.summary()  # ends with the total, trainable and non-trainable parameter counts
    print("Total GFLOPs: %.3fG" % (count_flops(model) / 1e9))


if __name__ == "__main__":
    main()
