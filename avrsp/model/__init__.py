"""The AVRSP network, one module per paper component (paper Fig. 2).

- :mod:`~avrsp.model.s3d` — visual backbone (torchvision S3D, four taps)
- :mod:`~avrsp.model.soundnet` — audio backbone (SoundNet-8 conv1–7)
- :mod:`~avrsp.model.aspp` — ASPP and LIP after each stage
- :mod:`~avrsp.model.ravf` — RAVF fusion, eq. (1)–(7)
- :mod:`~avrsp.model.fusion` — the Table V fusion baselines
- :mod:`~avrsp.model.multiscale` — MS, eq. (8)–(12), and MRG, eq. (13)–(15)
- :mod:`~avrsp.model.decoder` — the saliency decoder
- :mod:`~avrsp.model.network` — the assembled network and ``build_model``
"""

from avrsp.model.network import AVRSP, build_model

__all__ = ["AVRSP", "build_model"]
