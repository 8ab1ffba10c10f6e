# Two commands on a fresh machine:  make demo  |  make test
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2
export MPLBACKEND ?= Agg

# Demo: a synthetic 4-class dataset, a short two-phase training run from scratch on the CPU, then
# predict + mIoU. resnet50, not vgg: without ImageNet weights, VGG16 (no batch norm, N(0, 0.02)
# init) hardly leaves the all-background solution in a CPU budget; resnet50's batch norm trains
# from scratch in a few epochs, and with precise_bn_images its val mIoU shows it. Square 128x128
# images at 64x64 waste no compute on letterbox padding; focal + dice loss finds the small
# objects in fewer steps. A fifth of the images validate: on a val split of 27 images, the mIoU
# of a checkpoint was up to 4.5 points off that on 200 more images. best_epoch_weights is the
# checkpoint with the highest val mIoU (of epochs 2, 4, 6, 8), the figure the demo reports: the
# lowest val loss kept epoch 8 at 84.6% in one run, where epoch 6 had 85.3%. The run costs
# 16.9 TFLOP (python benchmark.py --sections demo).
# The demo writes only into DEMO_DATA and DEMO_OUT, folders of its own (see utils/demo_manifest.py).
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, bf16 or AMX.
# With AVX2 alone they trained the demo's ResNet50 at 64x64 1.6x faster but VGG at 512x512 1.4x
# slower (docs/performance.md), so only the demo turns them on; TF_ENABLE_ONEDNN_OPTS=0 keeps
# them off.
DEMO_DATA := VOCdevkit/demo
DEMO_OUT := logs/demo
DEMO_IMAGES := 270
DEMO_SPLIT := --train_percent 0.8
DEMO_TRAIN := --num_classes 4 --backbone resnet50 --model_path "" --input_shape 64 64 \
	--Freeze_Epoch 1 --UnFreeze_Epoch 8 --Freeze_batch_size 4 --Unfreeze_batch_size 4 \
	--optimizer_type adam --dice_loss True --focal_loss True --precise_bn_images 32 \
	--eval_period 2 --save_period 8 --best_metric val_miou
DEMO_SHAPE := --num_classes 4 --backbone resnet50 --input_shape 64 64
DEMO_NAMES := --name_classes background circle square triangle
DEMO_MODEL = --model_path $(DEMO_OUT)/best_epoch_weights.weights.h5 $(DEMO_SHAPE)

# Medical demo: synthetic EM slices (utils/em_data.py) in the original's Medical_Datasets layout,
# the same kind of two-phase run from scratch through train_medical.py, then val mIoU and Dice.
# 128x128 inputs, since the membranes are only 2-4 px wide.
DEMO_MEDICAL_DATA := Medical_Datasets/demo
DEMO_MEDICAL_OUT := logs/demo_medical
DEMO_MEDICAL_IMAGES := 120
DEMO_MEDICAL_TRAIN := --backbone resnet50 --model_path "" --input_shape 128 128 \
	--Freeze_Epoch 1 --UnFreeze_Epoch 8 --Freeze_batch_size 4 --Unfreeze_batch_size 4 \
	--focal_loss True --precise_bn_images 32 --eval_period 2 --save_period 8
DEMO_MEDICAL_MODEL = --model_path $(DEMO_MEDICAL_OUT)/best_epoch_weights.weights.h5 \
	--num_classes 2 --backbone resnet50 --input_shape 128 128

.PHONY: venv demo demo-medical docs test lint clean-demo constraints

# KERAS_BACKEND=jax or torch also installs that backend (requirements-$(KERAS_BACKEND).txt).
BACKEND_INSTALLED := $(if $(filter tensorflow,$(KERAS_BACKEND)),,$(VENV)/.installed-$(KERAS_BACKEND))
venv: $(VENV)/.installed $(BACKEND_INSTALLED)

$(VENV)/.installed: requirements.txt requirements-core.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11+ is needed (found $$($(PYTHON) --version)); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
		-c constraints.txt
	@# opencv-python needs libGL and glib from the system; install them where we can.
	@$(PY) -c "import cv2" 2>/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq libgl1 libglib2.0-0 >/dev/null; \
		else echo "import cv2 failed: install libGL and glib, e.g. sudo apt-get install libgl1 libglib2.0-0"; exit 1; fi; }
	KERAS_BACKEND=tensorflow $(PY) -c "import cv2, keras, tensorflow as tf; print('tensorflow', tf.__version__, 'keras', keras.__version__, 'opencv', cv2.__version__)"
	touch $@

$(VENV)/.installed-%: requirements-%.txt constraints.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-$*.txt \
		-c constraints.txt
	KERAS_BACKEND=$* $(PY) -c "import keras; print('keras on', keras.backend.backend())"
	touch $@

demo: export TF_ENABLE_ONEDNN_OPTS ?= 1
demo: venv
	$(PY) -m utils.demo_data --out $(DEMO_DATA) --num_images $(DEMO_IMAGES) --outputs $(DEMO_OUT)
	$(PY) voc_annotation.py --VOCdevkit_path $(DEMO_DATA) $(DEMO_SPLIT)
	$(PY) train.py $(DEMO_TRAIN) --VOCdevkit_path $(DEMO_DATA) --save_dir $(DEMO_OUT)
	$(PY) predict.py --mode dir_predict $(DEMO_MODEL) --dir_origin_path img/ \
		--dir_save_path $(DEMO_OUT)/img_out/
	$(PY) get_miou.py $(DEMO_MODEL) $(DEMO_NAMES) --VOCdevkit_path $(DEMO_DATA) \
		--miou_out_path $(DEMO_OUT)/miou_out

demo-medical: venv
	$(PY) -m utils.em_data --out $(DEMO_MEDICAL_DATA) --num_images $(DEMO_MEDICAL_IMAGES) \
		--outputs $(DEMO_MEDICAL_OUT)
	$(PY) voc_annotation_medical.py --VOCdevkit_path $(DEMO_MEDICAL_DATA) --train_percent 0.8
	$(PY) train_medical.py $(DEMO_MEDICAL_TRAIN) --VOCdevkit_path $(DEMO_MEDICAL_DATA) \
		--save_dir $(DEMO_MEDICAL_OUT)
	$(PY) get_miou.py $(DEMO_MEDICAL_MODEL) --name_classes background membrane \
		--VOCdevkit_path $(DEMO_MEDICAL_DATA) --miou_out_path $(DEMO_MEDICAL_OUT)/miou_out

# README's pictures (docs/*.png) from the demo run; trains it first if its checkpoint is missing.
docs: venv
	@test -f $(DEMO_OUT)/best_epoch_weights.weights.h5 || $(MAKE) demo
	$(PY) -m docs.make_pictures $(DEMO_MODEL) $(DEMO_NAMES) --log_dir $(DEMO_OUT) \
		--VOCdevkit_path $(DEMO_DATA)

lint: venv
	$(VENV)/bin/ruff check .

# The suite runs in a few pytest processes, each up to a memory limit (see tests/run_suite.py);
# it runs the scripts on JAX and PyTorch too (tests/test_backends.py).
test: venv $(VENV)/.installed-jax $(VENV)/.installed-torch lint
	$(PY) tests/run_suite.py -q

# Deletes exactly the files make demo and make demo-medical wrote (listed in each dataset's
# demo_manifest.json).
clean-demo:
	$(PYTHON) -m utils.demo_manifest $(DEMO_DATA)
	$(PYTHON) -m utils.demo_manifest $(DEMO_MEDICAL_DATA)

# Pin the newest versions requirements*.txt allow: a fresh venv without constraints, frozen.
# Run make test afterwards, and commit constraints.txt when it passes.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
		-r requirements-jax.txt -r requirements-torch.txt
	{ sed -n '1,3p' constraints.txt; .venv-constraints/bin/pip freeze; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-constraints
