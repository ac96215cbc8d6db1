"""Published scores, quoted from the AVRSP paper's Tables I and II (not measured here).

Each method's SIM, CC, NSS and AUC-J on the six audio-visual datasets, as the paper
prints them (its own rows are "Ours"; the peers' come from their papers). The datasets
are named as the STAViS layout names them (:mod:`preprocessing.sources.stavis`), so a
row lines up with ``avrsp evaluate``'s columns. ``avrsp evaluate --published`` adds these
rows to its table, labelled "(quoted)".

Transcription note: the paper's ViNet (AV) NSS on DIEM is printed unclearly in the copy
we read ("2353"); we read it as 2.53.
"""

from __future__ import annotations

from avrsp.tables import ResultsTable

#: Dataset order of Table I, then Table II.
DATASETS = ("DIEM", "ETMD_av", "AVAD", "Coutrot_db1", "Coutrot_db2", "SumMe")
_METRICS = ("sim", "cc", "nss", "auc_j")

# method: (SIM, CC, NSS, AUC-J) for each dataset of DATASETS, in that order.
_ROWS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "TASED-Net (V)": (
        (0.461, 0.557, 2.16, 0.881), (0.366, 0.509, 2.63, 0.916), (0.439, 0.601, 3.16, 0.914),
        (0.388, 0.479, 2.18, 0.867), (0.314, 0.437, 3.17, 0.921), (0.333, 0.428, 2.10, 0.884),
    ),
    "STAViS (V)": (
        (0.472, 0.567, 2.19, 0.879), (0.412, 0.560, 2.84, 0.929), (0.443, 0.604, 3.07, 0.915),
        (0.384, 0.459, 1.99, 0.862), (0.447, 0.653, 4.19, 0.941), (0.332, 0.418, 1.98, 0.884),
    ),
    "ViNet (V)": (
        (0.483, 0.626, 2.47, 0.898), (0.409, 0.569, 3.06, 0.928), (0.504, 0.694, 3.82, 0.928),
        (0.423, 0.551, 2.68, 0.886), (0.466, 0.724, 5.61, 0.950), (0.345, 0.466, 2.40, 0.898),
    ),
    "CASP-Net (V)": (
        (0.538, 0.649, 2.59, 0.904), (0.471, 0.616, 3.31, 0.938), (0.526, 0.681, 3.75, 0.931),
        (0.445, 0.559, 2.64, 0.888), (0.567, 0.756, 6.07, 0.963), (0.382, 0.485, 2.52, 0.904),
    ),
    "TSFP-Net (V)": (
        (0.527, 0.651, 2.62, 0.906), (0.433, 0.576, 3.09, 0.932), (0.530, 0.688, 3.79, 0.931),
        (0.447, 0.571, 2.73, 0.895), (0.528, 0.743, 5.31, 0.959), (0.362, 0.463, 2.28, 0.894),
    ),
    "AVRSP (V), paper": (
        (0.545, 0.668, 2.67, 0.907), (0.470, 0.611, 3.33, 0.930), (0.533, 0.697, 3.75, 0.933),
        (0.459, 0.590, 2.83, 0.895), (0.602, 0.820, 6.28, 0.963), (0.374, 0.494, 2.57, 0.900),
    ),
    "STAViS (AV)": (
        (0.482, 0.580, 2.26, 0.884), (0.425, 0.569, 2.94, 0.931), (0.457, 0.608, 3.18, 0.919),
        (0.394, 0.472, 2.11, 0.869), (0.511, 0.735, 5.28, 0.958), (0.337, 0.422, 2.04, 0.888),
    ),
    "ViNet (AV)": (
        (0.498, 0.632, 2.53, 0.899), (0.406, 0.571, 3.08, 0.928), (0.491, 0.674, 3.77, 0.927),
        (0.425, 0.560, 2.73, 0.889), (0.493, 0.754, 5.95, 0.951), (0.343, 0.463, 2.41, 0.897),
    ),
    "CASP-Net (AV)": (
        (0.543, 0.655, 2.61, 0.906), (0.478, 0.620, 3.34, 0.940), (0.528, 0.691, 3.81, 0.933),
        (0.456, 0.561, 2.65, 0.889), (0.585, 0.788, 6.34, 0.963), (0.387, 0.499, 2.60, 0.907),
    ),
    "TSFP-Net (AV)": (
        (0.527, 0.651, 2.62, 0.906), (0.428, 0.576, 3.07, 0.932), (0.521, 0.704, 3.77, 0.932),
        (0.447, 0.571, 2.73, 0.895), (0.528, 0.743, 5.31, 0.959), (0.360, 0.464, 2.30, 0.894),
    ),
    "DAVS (AV)": (
        (0.484, 0.580, 2.29, 0.884), (0.426, 0.600, 2.96, 0.932), (0.458, 0.610, 3.19, 0.919),
        (0.400, 0.482, 2.19, 0.869), (0.512, 0.734, 4.98, 0.960), (0.339, 0.423, 2.29, 0.889),
    ),
    "AVRSP (AV), paper": (
        (0.559, 0.685, 2.78, 0.911), (0.474, 0.611, 3.36, 0.934), (0.549, 0.704, 3.84, 0.933),
        (0.463, 0.595, 2.87, 0.899), (0.617, 0.837, 6.47, 0.964), (0.381, 0.504, 2.72, 0.903),
    ),
}  # fmt: skip


def published_scores() -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {dataset: {metric: value}}}`` for every quoted row."""
    return {
        method: {
            d: dict(zip(_METRICS, v, strict=True)) for d, v in zip(DATASETS, rows, strict=True)
        }
        for method, rows in _ROWS.items()
    }


def add_published_rows(table: ResultsTable, *, suffix: str = " (quoted)") -> int:
    """Append the quoted rows to ``table`` for the datasets it shows; returns how many rows
    were added (none when the table shows none of the six datasets)."""
    if not set(table.datasets) & set(DATASETS):
        return 0
    for method, scores in published_scores().items():
        table.add(method + suffix, scores)
    return len(_ROWS)
