"""Constants of the protocol, the export, the model, the gate and the index. No logic lives here.

The lowest layer: ``modules``, ``components`` and ``pipeline`` import it; it imports nothing of
the project. Paths and local-runner settings are in ``pipeline/configs.py``.
"""

# ---------------------------------------------------------------- evaluation protocol (DESIGN 5)
DEFAULT_CUTOFF = "2015-08-01"  # train = events at or before 2015-08-01 00:00 UTC
SAMPLE_ITEMS_SEED = 1  # numpy.random.default_rng(1).choice(pool, N, replace=False)
EVAL_KS = (1, 5, 10, 20, 50)
NDCG_K = 50
COVERAGE_K = 50
TIE_EPSILON = 1e-9

# ---------------------------------------------------------------- export (DESIGN 4)
PROPERTY_MIN_COVERAGE = 0.36  # the original kept properties of > 150,000 of 417,053 items
NUMERIC_PROPERTY_MIN_SHARE = 0.99  # a property is numeric when this share of values is "n<number>"
HISTORY_LENGTH = 50  # items kept in the history column (most recent first)
# The long-term profile (issue 14): every distinct item of the visitor's train history, most
# recently seen first, with its count, strongest event type and last-seen time, capped here. Only
# queries carry it (eval rows, requests); the Trainer builds it at each pseudo-cutoff.
PROFILE_LENGTH = 500
RECENT_POPULARITY_DAYS = 14

# ---------------------------------------------------------------- model
# (modules/transform.py, model.py, training.py, serving.py; custom_config overrides)
# The architecture and optimiser settings below were chosen before the validation window existed
# (on the default data's eval split); they await a re-check on the validation window
# (benchmarks/bench_model.py prints it; `retailrec run --set KEY=VALUE` tries one). The epoch count
# and the repeat boost are chosen per run on the window.
MODEL_HISTORY_LENGTH = 50  # history items the model reads (most recent first)
MODEL_PROFILE_LENGTH = PROFILE_LENGTH  # profile items the repeat term reads (transform width)
TEXT_HASH_BUCKETS = 1 << 15  # property tokens are hashed into this many buckets
TEXT_MAX_TOKENS = 48  # property tokens kept per item
VISITOR_MIN_COUNT = 2  # visitors with fewer train events share the out-of-vocabulary id
MODEL_EMBEDDING_DIM = 64
MODEL_ENCODER = "position"  # mean | position | attention | gru (benchmarks/bench_model.py)
MODEL_USE_VISITOR = False  # a visitor-id embedding hurt on real logs
MODEL_USE_TIME = True
MODEL_HIDDEN_DIM = 128
MODEL_DROPOUT = 0.0
MODEL_EPOCHS = 10  # at most; early stopping keeps the best epoch
MODEL_BATCH_SIZE = 1024
MODEL_LEARNING_RATE = 0.003
# catch_up_adam (modules/optimizer.py: embedding rows updated when a batch names them, with the
# steps they missed) | adam (Keras's: every row of the item table at every step, 141 of 176 ms a
# step at full scale)
MODEL_OPTIMIZER = "catch_up_adam"
MODEL_HORIZON_DAYS = 14.0  # pseudo-cutoffs lie up to this long before their target event
MODEL_EXAMPLES_PER_EVENT = 1
MODEL_SEED = 0
SERVING_TOP_K = 50
MODEL_NEGATIVES = "in_batch"  # in_batch | history (see modules/model.py)
MODEL_SEQUENCE = "events"  # events | distinct: what the user tower's encoder reads
MODEL_HISTORY_ITEMS = 0  # items the encoder reads (0: the transform's whole width)
MODEL_PROFILE_ITEMS = 0  # profile items the repeat term reads (0: the transform's whole width)
MODEL_BIAS_PRIOR = True  # the per-id item bias starts at the item's log share of the targets
# The user tower's encoder reads the history items' item-tower vectors (id embedding + content)
# instead of their id embeddings alone. On the validation windows of the development seeds
# (benchmarks/bench_model.py, generator seed 0): default 0.4702 -> 0.5348, repeat-heavy 0.6858 ->
# 0.7330, never-return 0.2202 -> 0.2260 (docs/benchmarks.md).
MODEL_HISTORY_CONTENT = True
# The validation window (DESIGN 5.6, modules/examples.py): the last days of train, evaluated like
# the eval split, pick the epoch count and the repeat boost.
MODEL_VALIDATION_DAYS = 7.0
MODEL_VALIDATION_MIN_QUERIES = 100  # fewer window queries: no validation (fixed epochs, boost 0)
MODEL_VALIDATION_MAX_QUERIES = 5000  # a seeded sample of the window's queries is scored
# Epochs without a better validation Recall@50 before training stops. 1: in the 23 validation
# curves of the issue-14 runs (5 presets and the full scale, every Tuner trial, patience 2) no
# epoch after the first drop beat the best before it; at RetailRocket scale an epoch costs ~100 s.
MODEL_PATIENCE = 1
MODEL_CALIBRATE_REPEAT = True  # choose the personal weight and repeat boost on the window
MODEL_REFIT = True  # refit on all train events with the chosen epochs and boost

# ---------------------------------------------------------------- evaluation gate
EVAL_BATCH_SIZE = 512
# Candidates the evaluator signature returns per query: the 50 that are scored, plus room to drop
# each visitor's seen items under exclude_seen (at most HISTORY_LENGTH of them are in its history).
EVAL_CANDIDATES = 50 + HISTORY_LENGTH
# Bless only at or above this Recall@50 (a floor that catches a broken model, not a target).
MIN_RECALL_AT_50 = 0.01
# Against the latest blessed model the gate refuses only when the whole 95% paired interval of the
# Recall@50 difference lies below -REGRESSION_TOLERANCE. The interval covers the sampling of the
# eval queries, not training noise: two retrains on the same data are so alike that their
# difference's interval is narrow (+-0.006 on the default data), while retrains differ by up to
# about 0.01 (0.3843 vs 0.3932; seeds 0 and 1: 0.4002 vs 0.4024). This margin keeps a retrain
# blessed; a model worse by more than it, beyond noise, is refused.
REGRESSION_TOLERANCE = 0.01

# ---------------------------------------------------------------- ScaNN index
# (components/scann_index: chosen on eval query vectors, label-free; DESIGN 7-8)
SCANN_TARGET_RECALL = 0.95  # Recall@SCANN_RECALL_K against exact search; below it, no push
SCANN_RECALL_K = 50
# Eval queries (a seeded sample; their vectors only, never their targets) the index is chosen on.
# Train-split queries were tried: at full scale no approximate configuration reached the target on
# them (their visitors' states differ from the eval queries'), so the choice fell back to exact.
SCANN_TUNE_QUERIES = 2000
SCANN_TUNE_SEED = 0
SCANN_THREADS = 2  # ScaNN training and search threads (fixed: the build must not depend on cores)
SCANN_TIMING_REPEATS = 3  # timings are medians of this many runs
SCANN_SINGLE_QUERIES = 200  # queries timed one at a time

# ---------------------------------------------------------------- slices and intervals
# (modules/metrics.py; issue 13) A paired bootstrap over eval visitors: a visitor's queries stay
# together, every model is resampled with the same draws, so differences are paired.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
SLICE_KS = (10, 50)  # Recall@K reported per slice
# Visitor train-history length buckets: (name, lowest, highest) events, inclusive.
HISTORY_BUCKETS = (
    ("history_1", 1, 1),
    ("history_2_5", 2, 5),
    ("history_6_20", 6, 20),
    ("history_21_100", 21, 100),
    ("history_over_100", 101, None),
)

# ---------------------------------------------------------------- files
TRAINING_SUMMARY_FILE = (
    "training_summary.json"  # the Trainer's model_run artifact (modules/trainer.py)
)

# ---------------------------------------------------------------- tuner
# (modules/tuner.py; issue 14) The TFX Tuner (KerasTuner) between Transform and the Trainer: a
# seeded random search on the validation window's Recall@50 (the Trainer's own window and
# choices, never the eval split). Trial 1 is always the defaults above, so the search never picks
# settings worse than them on the window. One trial costs about the Trainer's validated fit (70-90
# s on the default data, 2 cores): 2 trials keep `make run` near 8 minutes.
TUNE_TRIALS = 2
# Time budget: the search stops before a trial that would take it past TUNE_SECONDS_PER_TRIAL x
# trials (measured by the trials so far). On the default data a trial takes 70-110 s, so both
# default trials run; at RetailRocket scale one trial (the defaults) takes ~10 minutes and is the
# whole budget: the Tuner then costs nothing beyond the Trainer's own validated fit, which the
# Trainer skips by reusing the trial's choices.
TUNE_SECONDS_PER_TRIAL = 150
TUNE_SEED = 0
TUNE_TRIALS_KEY = "tune_trials"  # the Tuner's custom_config: its number of trials ...
TUNE_SEED_KEY = "tune_seed"  # ... and its seed (the rest is the Trainer's custom_config)
TUNE_OBJECTIVE = "val_recall_at_50"  # the KerasTuner objective: validation-window Recall@50
# The search space: a few discrete values per setting around its default, which is always added to
# the choices (history_items and profile_items: 0, all the transform's width, is the default).
# Settings given explicitly (`retailrec run --set KEY=VALUE`) are not searched.
TUNE_SPACE = {
    "learning_rate": (0.0015, 0.003, 0.006),
    "embedding_dim": (32, 64, 128),
    "horizon_days": (7.0, 14.0, 28.0),
    "history_items": (10, 20),  # of the MODEL_HISTORY_LENGTH (50) history items
    "profile_items": (100, 250),  # of the MODEL_PROFILE_LENGTH (500) profile items
}
# Inside the best_hyperparameters artifact's JSON, beside KerasTuner's "space" and "values": every
# trial's settings, validation Recall@50 and seconds (the artifact holds exactly one file).
TUNE_LOG_KEY = "retailrec_tuning"
