"""course_utils: the package behind the course "Training a ResNet from scratch on CIFAR-10".

One job per module; notebooks import from here and never reimplement:

- ``data``        CIFAR-10/100 loading, the cache, the train/val split, normalization stats
- ``dataset_stats`` what the data copy is (exact vs JPEG-degraded) and its pixel statistics
- ``images``      HWC uint8 <-> NCHW tensor conversions
- ``augment``     batched crop+flip on tensors, and the torchvision reference pipeline
- ``augment_viewer`` random draws of an augmentation, as a grid or a widget
- ``loader``      in-memory batch iterator (no worker processes), sample normalized batches
- ``throughput``  images per second of augmentation and of training steps
- ``side_by_side`` the one timing method: contestants in round-robin windows (lesson 02, ``make bench``)
- ``models``      ``create_model`` over the CIFAR ResNet family, a CIFAR ViT and the fast net
- ``model_anatomy`` the basic block step by step, its diagram, per-stage activation maps
- ``normalization`` BatchNorm/GroupNorm moments and batch dependence
- ``init``        weight initialization schemes; ``init_diagnostics`` their gains, depth profiles, first steps
- ``whitening``   the fast net's patch-whitening filters
- ``config``      the training recipe as plain data, loaded from YAML; differences between configs
- ``schedule``    warmup + cosine (or linear) learning rate, in the course's or airbench94's steps
- ``engine``      the training loop: data and model set-up, checkpoints, resume
- ``run_dir``     a run directory's files (``run_files`` reads them with checks, ``run_lock`` guards them)
- ``distributed`` data parallelism under torchrun; ``progress`` the loop's bars and printed tables
- ``lookahead``   the EMA lookahead of the fast recipe
- ``evaluate``    accuracy/loss, predictions, test-time augmentation
- ``predictions`` predictions and the classifier of a trained run directory
- ``calibration`` ECE, reliability diagrams, temperature scaling, calibration tables
- ``confusion``   confusion matrix, per-class accuracy, confused pairs
- ``failures``    failure galleries, ambiguous images, calibration on a subset
- ``background_probe`` does accuracy survive when part of the image is replaced?
- ``lr_sweeps``   learning-rate grids and the LR range test
- ``learning_curves`` numbers read off a run's learning curves
- ``runs``        run directories: their state, compared side by side
- ``seeds``       repeat a config over seeds, mean ± std
- ``stats``       a mean and a difference with their standard errors
- ``imbalance``   accuracy against class frequency on long-tailed data
- ``plots``, ``tables`` figures and plain-text tables
- ``profiles``    smoke / laptop / gpu / full notebook profiles; ``timing`` the training-time estimates
- ``repro``       seeds, determinism, device and precision; ``colab`` the Colab setup cell
- ``course``      ``make course``: execute the notebooks with papermill
- ``cli``         ``train.py`` and ``test.py``
"""

__version__ = "0.1.0"
