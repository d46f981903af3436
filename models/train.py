#!/usr/bin/env python3
"""Train the small example models that modelcar packs into OCI images.

All three models are classifiers trained on scikit-learn's bundled iris data
set (``sklearn.datasets.load_iris``: 150 rows, 4 FP64 features, classes
0 = setosa, 1 = versicolor, 2 = virginica). No network access is needed.

Files written, relative to the output root (default: the directory that
holds this script, i.e. ``models/``):

* ``mlserver/sklearn/model.joblib``  - ``LogisticRegression`` saved with
  ``joblib.dump`` (MLServer runtime ``mlserver_sklearn.SKLearnModel``).
* ``mlserver/xgboost/model.bst``     - ``xgboost.XGBClassifier`` (10 trees,
  depth 3). Saved with ``XGBClassifier.save_model``, i.e. the booster's
  ``save_model`` plus the ``scikit_learn`` metadata attribute. XGBoost 2.1+
  writes UBJSON for a ``.bst`` name. The metadata matters: MLServer's
  ``mlserver_xgboost.XGBoostModel`` first tries ``XGBRegressor.load_model``
  and only falls back to ``XGBClassifier`` on the ``TypeError`` that this
  metadata triggers; a bare booster file would be served as a regressor
  returning probabilities instead of classes.
* ``mlserver/lightgbm/model.bst``    - ``lightgbm.LGBMClassifier`` (10 trees),
  saved with ``booster_.save_model`` (LightGBM text format, starts with
  ``tree``). MLServer's ``mlserver_lightgbm.LightGBMModel`` loads it with
  ``lightgbm.Booster(model_file=...)``, whose ``predict`` returns the class
  probabilities, shape [n, 3].

Training is deterministic (fixed seeds, single thread); rerunning with the
pinned versions reproduces the same predictions. After writing, the script
loads every file back, prints its size, its first 16 bytes in hex and the
predictions for iris rows 0, 1, 2, 50 and 100, and fails if those are not
0, 0, 0, 1, 2.

Rerun (from the repository root, ideally in a fresh virtualenv):

    pip install -r models/requirements.txt && python models/train.py

or ``python models/train.py OUT_ROOT`` to write under another directory.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import joblib
import lightgbm
import numpy as np
import sklearn
import xgboost
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

SEED = 42
CHECK_ROWS = [0, 1, 2, 50, 100]
EXPECTED = [0, 0, 0, 1, 2]

SKLEARN_FILE = Path("mlserver", "sklearn", "model.joblib")
XGBOOST_FILE = Path("mlserver", "xgboost", "model.bst")
LIGHTGBM_FILE = Path("mlserver", "lightgbm", "model.bst")


def load_data() -> tuple[np.ndarray, np.ndarray]:
    iris = load_iris()
    x = np.ascontiguousarray(iris.data, dtype=np.float64)
    y = np.asarray(iris.target, dtype=np.int64)
    return x, y


def train_sklearn(x: np.ndarray, y: np.ndarray, path: Path) -> None:
    model = LogisticRegression(max_iter=1000, random_state=SEED)
    model.fit(x, y)
    joblib.dump(model, path)


def train_xgboost(x: np.ndarray, y: np.ndarray, path: Path) -> None:
    model = xgboost.XGBClassifier(
        n_estimators=10,
        max_depth=3,
        learning_rate=0.3,
        tree_method="hist",
        random_state=SEED,
        n_jobs=1,
    )
    model.fit(x, y)
    # Same bytes as model.get_booster().save_model(path), plus the
    # "scikit_learn" attribute that marks the file as a classifier.
    # XGBoost 2.1+ warns that a .bst name gets the default (UBJSON) format;
    # that is the intended format here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*UBJSON format as default.*")
        model.save_model(path)


def train_lightgbm(x: np.ndarray, y: np.ndarray, path: Path) -> None:
    model = lightgbm.LGBMClassifier(
        n_estimators=10,
        num_leaves=7,
        max_depth=3,
        learning_rate=0.3,
        random_state=SEED,
        n_jobs=1,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )
    model.fit(x, y)
    model.booster_.save_model(path)


def describe(path: Path, classes: np.ndarray) -> list[int]:
    head = path.read_bytes()[:16]
    got = [int(c) for c in classes]
    print(f"{path}")
    print(f"  size:    {path.stat().st_size} bytes")
    print(f"  head:    {head.hex(' ')}  {head!r}")
    print(f"  rows {CHECK_ROWS} -> classes {got}")
    return got


def verify(root: Path, x: np.ndarray) -> bool:
    rows = x[CHECK_ROWS]
    ok = True

    skl = joblib.load(root / SKLEARN_FILE)
    ok &= describe(root / SKLEARN_FILE, skl.predict(rows)) == EXPECTED

    booster = xgboost.Booster()
    booster.load_model(root / XGBOOST_FILE)
    proba = booster.predict(xgboost.DMatrix(rows))
    ok &= describe(root / XGBOOST_FILE, proba.argmax(axis=1)) == EXPECTED
    # What mlserver_xgboost does: XGBRegressor first, XGBClassifier on TypeError.
    try:
        xgboost.XGBRegressor().load_model(root / XGBOOST_FILE)
        print("  ERROR:   loads as XGBRegressor; MLServer would not see a classifier")
        ok = False
    except TypeError:
        clf = xgboost.XGBClassifier()
        clf.load_model(root / XGBOOST_FILE)
        got = [int(c) for c in clf.predict(rows)]
        print(f"  as XGBClassifier (MLServer path): {got}")
        ok &= got == EXPECTED

    lgb = lightgbm.Booster(model_file=str(root / LIGHTGBM_FILE))
    proba = lgb.predict(rows)
    ok &= describe(root / LIGHTGBM_FILE, proba.argmax(axis=1)) == EXPECTED
    print(f"  probabilities (what MLServer returns):\n{np.round(proba, 4)}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out_root",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="directory under which mlserver/{sklearn,xgboost,lightgbm}/ are written "
        "(default: the directory of this script)",
    )
    args = parser.parse_args(argv)
    root: Path = args.out_root

    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, joblib {joblib.__version__}, "
        f"xgboost {xgboost.__version__}, lightgbm {lightgbm.__version__}"
    )

    x, y = load_data()
    for rel, train in (
        (SKLEARN_FILE, train_sklearn),
        (XGBOOST_FILE, train_xgboost),
        (LIGHTGBM_FILE, train_lightgbm),
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        train(x, y, path)

    if not verify(root, x):
        print(f"FAILED: expected classes {EXPECTED} for rows {CHECK_ROWS}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
