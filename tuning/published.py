"""The paper's ablation results, quoted from its Tables III, IV and V (not measured here).

Transcribed from the OCR text of the paper (../shared/paper/AVRSP-paper.txt). What we
had to read or guess:

- Table III's check marks are lost in the OCR. Rows 1–4 are audio off (row 4, "AVRSP"
  with two marks, equals Table I's AVRSP (V) on DIEM and AVAD), rows 5–8 audio on (row 8
  equals AVRSP (AV)). Within each group the order none, MS, MRG, both is our reading of
  rows 2/3 and 6/7 (one mark each: MS is the column printed first).
- Table IV names no dataset; its values are DIEM's (its 3-pair rows equal Table III's
  DIEM rows 4 and 8). Its columns are CC, NSS, AUC-J, SIM; we show the usual SIM, CC,
  NSS, AUC-J order. OCR'd without decimal points and read as: "0665" 0.665, "0907"
  0.907, "0683 275" 0.683 2.75, "278 0911" 2.78 0.911, "273" 2.73.
- Table V's visual-only baseline prints SIM 0.546 on DIEM where Table III prints 0.545
  for the same network; quoted as printed.
"""

from __future__ import annotations

Scores = dict[str, dict[str, float]]
_M = ("sim", "cc", "nss", "auc_j")


def _row(**per_dataset: tuple[float, float, float, float]) -> Scores:
    return {d: dict(zip(_M, v, strict=True)) for d, v in per_dataset.items()}


#: ablation → one entry per row, in the paper's order (the rows of tuning.ablations).
PUBLISHED: dict[str, list[Scores]] = {
    "table3": [
        _row(DIEM=(0.519, 0.628, 2.38, 0.901), AVAD=(0.514, 0.673, 3.56, 0.927)),
        _row(DIEM=(0.533, 0.654, 2.66, 0.904), AVAD=(0.529, 0.687, 3.74, 0.932)),
        _row(DIEM=(0.538, 0.647, 2.53, 0.902), AVAD=(0.526, 0.691, 3.69, 0.930)),
        _row(DIEM=(0.545, 0.668, 2.67, 0.907), AVAD=(0.533, 0.697, 3.75, 0.933)),
        _row(DIEM=(0.539, 0.663, 2.57, 0.905), AVAD=(0.528, 0.683, 3.69, 0.922)),
        _row(DIEM=(0.551, 0.676, 2.72, 0.908), AVAD=(0.540, 0.696, 3.77, 0.932)),
        _row(DIEM=(0.546, 0.673, 2.73, 0.907), AVAD=(0.544, 0.692, 3.72, 0.930)),
        _row(DIEM=(0.559, 0.685, 2.78, 0.911), AVAD=(0.549, 0.704, 3.84, 0.933)),
    ],
    # Visual-only 4, 3, 2, 1, 0 pairs, then audio-visual 4 … 0; (SIM, CC, NSS, AUC-J).
    "table4": [
        _row(DIEM=(0.540, 0.665, 2.68, 0.905)),
        _row(DIEM=(0.545, 0.668, 2.67, 0.907)),
        _row(DIEM=(0.541, 0.669, 2.64, 0.904)),
        _row(DIEM=(0.536, 0.661, 2.60, 0.904)),
        _row(DIEM=(0.528, 0.652, 2.54, 0.900)),
        _row(DIEM=(0.556, 0.683, 2.75, 0.909)),
        _row(DIEM=(0.559, 0.685, 2.78, 0.911)),
        _row(DIEM=(0.554, 0.681, 2.80, 0.907)),
        _row(DIEM=(0.554, 0.676, 2.73, 0.908)),
        _row(DIEM=(0.547, 0.670, 2.64, 0.903)),
    ],
    # Visual-only baseline, addition, multiplication, concatenation, bilinear, MBT, RAVF.
    "table5": [
        _row(DIEM=(0.546, 0.668, 2.67, 0.907), AVAD=(0.533, 0.697, 3.75, 0.933)),
        _row(DIEM=(0.547, 0.665, 2.54, 0.897), AVAD=(0.531, 0.690, 3.61, 0.920)),
        _row(DIEM=(0.542, 0.658, 2.53, 0.903), AVAD=(0.528, 0.688, 3.61, 0.913)),
        _row(DIEM=(0.545, 0.663, 2.60, 0.895), AVAD=(0.530, 0.688, 3.69, 0.915)),
        _row(DIEM=(0.553, 0.672, 2.66, 0.906), AVAD=(0.537, 0.696, 3.74, 0.929)),
        _row(DIEM=(0.547, 0.673, 2.73, 0.908), AVAD=(0.541, 0.697, 3.78, 0.927)),
        _row(DIEM=(0.559, 0.685, 2.78, 0.911), AVAD=(0.549, 0.704, 3.84, 0.933)),
    ],
}

#: The datasets each published table reports.
PUBLISHED_DATASETS = {"table3": ("DIEM", "AVAD"), "table4": ("DIEM",), "table5": ("DIEM", "AVAD")}
