"""Figures measured on the official YOLOv7 implementation and printed in the paper.

Packaged (not read from ../shared) so the zoo table works in a fresh clone. These are facts
we compare against, never values our code produced: ``OFFICIAL`` was measured by building
``models.yolo.Model(cfg, ch=3, nc=80)`` of WongKinYiu/yolov7 @ a207844 for every cfg, before
and after the official ``model.fuse()``, with thop (GFLOPs = 2 × counted ops / 1e9);
``PAPER_ROWS`` are the paper's Table 1/2 rows with the official model, form and FLOP
convention that reproduces each (see docs/reports.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# cfg key -> {"params", "fused_params", "<prefix>gflops<suffix>": {img: GFLOPs}} where prefix
# "fused_" means after the official model.fuse() and suffix "" / "_paper" / "_macs2" names
# the FLOP convention official / paper / macs2.
OFFICIAL: Mapping[str, Mapping[str, object]] = {
    'training/yolov7-tiny': {
        'params': 6228762,
        'fused_params': 6221370,
        'gflops': {640: 13.8604544, 416: 5.856041984, 320: 3.4651136},
        'gflops_paper': {640: 13.8238808, 416: 5.840589638, 320: 3.4559702},
        'gflops_macs2': {640: 13.7007104, 416: 5.788550144, 320: 3.4251776},
        'fused_gflops': {640: 13.7019392, 416: 5.789069312, 320: 3.4254848},
        'fused_gflops_paper': {640: 13.784251999999999, 416: 5.82384647, 320: 3.4460629999999997},
        'fused_gflops_macs2': {640: 13.7007104, 416: 5.788550144, 320: 3.4251776},
    },
    'training/yolov7': {
        'params': 37622682,
        'fused_params': 36907898,
        'gflops': {640: 106.4722432},
        'gflops_paper': {640: 106.1238616},
        'gflops_macs2': {640: 105.7693696},
        'fused_gflops': {640: 104.51353599999999},
        'fused_gflops_paper': {640: 104.68473199999998},
        'fused_gflops_macs2': {640: 104.5110784},
    },
    'training/yolov7x': {
        'params': 71347394,
        'fused_params': 71314746,
        'gflops': {640: 190.57971199999997},
        'gflops_paper': {640: 190.1294424},
        'gflops_macs2': {640: 189.67367679999998},
        'fused_gflops': {640: 189.6767488},
        'fused_gflops_paper': {640: 189.9037016},
        'fused_gflops_macs2': {640: 189.67367679999998},
    },
    'training/yolov7-w6': {
        'params': 82312436,
        'fused_params': 82277300,
        'gflops': {640: 105.48223999999999, 1280: 421.92895999999996},
        'gflops_paper': {640: 105.26250680000001, 1280: 421.05002720000005},
        'gflops_macs2': {640: 105.0281984, 1280: 420.1127936},
        'fused_gflops': {640: 103.2031232, 1280: 412.8124928},
        'fused_gflops_paper': {640: 103.31751259999999, 1280: 413.27005039999995},
        'fused_gflops_macs2': {640: 103.2003584, 1280: 412.8014336},
    },
    'training/yolov7-e6': {
        'params': 111898292,
        'fused_params': 111851380,
        'gflops': {640: 147.7355008, 1280: 590.9420032},
        'gflops_paper': {640: 147.3862188, 1280: 589.5448752},
        'gflops_macs2': {640: 147.02305280000002, 1280: 588.0922112000001},
        'fused_gflops': {640: 145.1986688, 1280: 580.7946752},
        'fused_gflops_paper': {640: 145.3767958, 1280: 581.5071832},
        'fused_gflops_macs2': {640: 145.1952128, 1280: 580.7808512},
    },
    'training/yolov7-d6': {
        'params': 154709364,
        'fused_params': 154652532,
        'gflops': {640: 202.38059520000002, 1280: 809.5223808000001},
        'gflops_paper': {640: 201.95480759999998, 1280: 807.8192303999999},
        'gflops_macs2': {640: 201.5158272, 1280: 806.0633088},
        'fused_gflops': {640: 199.3265664, 1280: 797.3062656},
        'fused_gflops_paper': {640: 199.5419094, 1280: 798.1676376},
        'fused_gflops_macs2': {640: 199.32241919999998, 1280: 797.2896767999999},
    },
    'training/yolov7-e6e': {
        'params': 166408884,
        'fused_params': 166335860,
        'gflops': {640: 230.03304960000003, 1280: 920.1321984000001},
        'gflops_paper': {640: 229.50482359999998, 1280: 918.0192943999999},
        'gflops_macs2': {640: 228.9627136, 1280: 915.8508544},
        'fused_gflops': {640: 227.13832960000002, 1280: 908.5533184000001},
        'fused_gflops_paper': {640: 227.40592859999998, 1280: 909.6237143999999},
        'fused_gflops_macs2': {640: 227.13487360000002, 1280: 908.5394944000001},
    },
    'deploy/yolov7-tiny': {
        'params': 6227101,
        'fused_params': 6219709,
        'gflops': {640: 13.8604544, 416: 5.856041984, 320: 3.4651136},
        'gflops_paper': {640: 13.8238808, 416: 5.840589638, 320: 3.4559702},
        'gflops_macs2': {640: 13.7007104, 416: 5.788550144, 320: 3.4251776},
        'fused_gflops': {640: 13.7019392, 416: 5.789069312, 320: 3.4254848},
        'fused_gflops_paper': {640: 13.784251999999999, 416: 5.82384647, 320: 3.4460629999999997},
        'fused_gflops_macs2': {640: 13.7007104, 416: 5.788550144, 320: 3.4251776},
    },
    'deploy/yolov7-tiny-silu': {
        'params': 6227101,
        'fused_params': 6219709,
        'gflops': {640: 13.8604544, 416: 5.856041984, 320: 3.4651136},
        'gflops_paper': {640: 13.784251999999999, 416: 5.82384647, 320: 3.4460629999999997},
        'gflops_macs2': {640: 13.7007104, 416: 5.788550144, 320: 3.4251776},
        'fused_gflops': {640: 13.7019392, 416: 5.789069312, 320: 3.4254848},
        'fused_gflops_paper': {640: 13.744623200000001, 416: 5.807103302, 320: 3.4361558000000003},
        'fused_gflops_macs2': {640: 13.7007104, 416: 5.788550144, 320: 3.4251776},
    },
    'deploy/yolov7': {
        'params': 37620125,
        'fused_params': 36905341,
        'gflops': {640: 106.4722432},
        'gflops_paper': {640: 106.1238616},
        'gflops_macs2': {640: 105.7693696},
        'fused_gflops': {640: 104.51353599999999},
        'fused_gflops_paper': {640: 104.68473199999998},
        'fused_gflops_macs2': {640: 104.5110784},
    },
    'deploy/yolov7x': {
        'params': 71344389,
        'fused_params': 71311741,
        'gflops': {640: 190.57971199999997},
        'gflops_paper': {640: 190.1294424},
        'gflops_macs2': {640: 189.67367679999998},
        'fused_gflops': {640: 189.6767488},
        'fused_gflops_paper': {640: 189.9037016},
        'fused_gflops_macs2': {640: 189.67367679999998},
    },
    'deploy/yolov7-w6': {
        'params': 70426236,
        'fused_params': 70394300,
        'gflops': {640: 90.35468800000001, 1280: 361.41875200000004},
        'gflops_paper': {640: 90.1449558, 1280: 360.5798232},
        'gflops_macs2': {640: 89.9293184, 1280: 359.7172736},
        'fused_gflops': {640: 89.93208320000001, 1280: 359.72833280000003},
        'fused_gflops_paper': {640: 90.0393046, 1280: 360.1572184},
        'fused_gflops_macs2': {640: 89.9293184, 1280: 359.7172736},
    },
    'deploy/yolov7-e6': {
        'params': 97246652,
        'fused_params': 97202940,
        'gflops': {640: 129.2901888, 1280: 517.1607552},
        'gflops_paper': {640: 128.9509078, 1280: 515.8036312},
        'gflops_macs2': {640: 128.6064128, 1280: 514.4256512},
        'fused_gflops': {640: 128.60986880000002, 1280: 514.4394752000001},
        'fused_gflops_paper': {640: 128.7808278, 1280: 515.1233112},
        'fused_gflops_macs2': {640: 128.6064128, 1280: 514.4256512},
    },
    'deploy/yolov7-d6': {
        'params': 133810044,
        'fused_params': 133757052,
        'gflops': {640: 176.26490880000003, 1280: 705.0596352000001},
        'gflops_paper': {640: 175.85198939999998, 1280: 703.4079575999999},
        'gflops_macs2': {640: 175.4345472, 1280: 701.7381888},
        'fused_gflops': {640: 175.43869439999997, 1280: 701.7547775999999},
        'fused_gflops_paper': {640: 175.64543579999997, 1280: 702.5817431999999},
        'fused_gflops_macs2': {640: 175.4345472, 1280: 701.7381888},
    },
    'deploy/yolov7-e6e': {
        'params': 151757244,
        'fused_params': 151687420,
        'gflops': {640: 211.5877376, 1280: 846.3509504},
        'gflops_paper': {640: 211.0695126, 1280: 844.2780504},
        'gflops_macs2': {640: 210.5460736, 1280: 842.1842944},
        'fused_gflops': {640: 210.54952960000003, 1280: 842.1981184000001},
        'fused_gflops_paper': {640: 210.8099606, 1280: 843.2398424},
        'fused_gflops_macs2': {640: 210.5460736, 1280: 842.1842944},
    },
}

# convention name (analysis.CONVENTIONS) -> suffix of the OFFICIAL keys
CONVENTION_KEYS: Mapping[str, str] = {"official": "gflops", "paper": "gflops_paper",
                                      "macs2": "gflops_macs2"}


@dataclass(frozen=True)
class PaperRow:
    """One printed row of the paper and the official model that reproduces it.

    ``cfg`` + ``fused`` name the model form (official cfg, before/after ``model.fuse()``) and
    ``convention`` the FLOP count; ``note`` says what a reader must know (e.g. D6 counts its
    aux head, the W6 row is 0.2 G below any count of the released model)."""

    label: str
    model: str
    params_m: float
    gflops: Mapping[int, float]
    cfg: str
    fused: bool
    convention: str
    note: str = ""


PAPER_ROWS: tuple[PaperRow, ...] = (
    PaperRow("YOLOv7-tiny", "yolov7-tiny", 6.2, {640: 13.8, 416: 5.8, 320: 3.5},
             "deploy/yolov7-tiny", False, "paper",
             "as built (unfused) deploy cfg, LeakyReLU"),
    PaperRow("YOLOv7", "yolov7", 36.9, {640: 104.7}, "deploy/yolov7", True, "paper"),
    PaperRow("YOLOv7-X", "yolov7x", 71.3, {640: 189.9}, "deploy/yolov7x", True, "paper"),
    PaperRow("YOLOv7-W6", "yolov7-w6", 70.4, {1280: 360.0}, "deploy/yolov7-w6", True, "paper",
             "closest count is 360.16 G; the printed 360.0 is not reproduced by any convention"),
    PaperRow("YOLOv7-E6", "yolov7-e6", 97.2, {1280: 515.2}, "deploy/yolov7-e6", True, "paper",
             "paper-conv count is 515.12 G, printed 515.2"),
    PaperRow("YOLOv7-D6", "yolov7-d6", 154.7, {1280: 806.8}, "training/yolov7-d6", False,
             "paper", "training cfg: the aux head is counted (deploy d6 is 133.8M / 702.6G); "
                      "806.8 lies between macs2 806.06 and paper-conv 807.82"),
    PaperRow("YOLOv7-E6E", "yolov7-e6e", 151.7, {1280: 843.2}, "deploy/yolov7-e6e", True,
             "paper"),
)

# Paper Table 3 (compound-scaling ablation on yolov7, @640): label -> (params M, GFLOPs).
PAPER_SCALING_ABLATION: Mapping[str, tuple[float, float]] = {
    "base (v7-X light)": (47.0, 125.5),
    "width only (1.25 w)": (73.4, 195.5),
    "depth only (2.0 d)": (69.3, 187.6),
    "compound (v7-X)": (71.3, 189.9),
}
