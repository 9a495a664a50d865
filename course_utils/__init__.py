"""course_utils: the package behind the course "Training a ResNet from scratch on CIFAR-10".

One job per module; notebooks import from here and never reimplement:

- ``data``        CIFAR-10/100 loading, the cache, the train/val split, normalization stats
- ``augment``     batched crop+flip on tensors, and the torchvision reference pipeline
- ``loader``      in-memory batch iterator (no worker processes)
- ``models``      ``create_model`` over the CIFAR ResNet family and a CIFAR ViT
- ``init``        weight initialization schemes and their diagnostics
- ``config``      the training recipe as plain data, loaded from YAML
- ``schedule``    warmup + cosine learning rate
- ``engine``      the training loop: run directory, checkpoints, resume, DDP
- ``evaluate``    accuracy/loss and predictions
- ``calibration`` ECE, reliability diagrams, temperature scaling
- ``analysis``    confusion matrix, failure galleries, background/texture probe
- ``plots``       learning curves and other figures
- ``profiles``    smoke / laptop / full notebook profiles
- ``sweeps``      learning-rate grids and the LR range test (lesson 06), calibration tables (07)
- ``seeds``       repeat a config over seeds, mean ± std; comparing runs (lessons 09, 11)
- ``imbalance``   accuracy against class frequency on long-tailed data (lesson 10)
- ``lesson_data`` helpers of lessons 00-02; ``lesson_models`` of lessons 03-05
- ``course``      ``make course``: execute the notebooks with papermill
- ``cli``         ``train.py`` and ``test.py``
"""

__version__ = "0.1.0"
