# The full NLB'21 path, stage by stage, as make file dependencies: a stage that is done and up to
# date is skipped, so an interrupted run continues where it stopped.
#
#   make leaderboard        data -> tensors -> train (phase test) -> submission -> validate
#   make leaderboard-val    the same in phase val, ending with the local scores table
#
# DATASETS="mc_maze_small mc_maze_medium" BINS="5" narrow it; SYNTH=1 generates the data
# (`nlbkit synth`, SYNTH_SCALE=small|full) instead of downloading it; MODEL picks the model of the
# submission (langevin|smoothing).
#
# The training stage is one `nlbkit train-all` over every dataset x bin: each run a Ray task (a local
# instance, or the cluster at ADDRESS=host:port) holding CPUS_PER_TASK CPUs and GPUS_PER_TASK GPUs;
# SEEDS=4 trains four seeds per run and submits their mean (default: the dataset's train.seeds: 3 for
# mc_maze_small, measured in docs/results.md; 1 elsewhere). TRAIN_ARGS="--epochs 20" goes to it.

ALL_DATASETS := mc_maze mc_rtt area2_bump dmfc_rsg mc_maze_large mc_maze_medium mc_maze_small
DATASETS    ?= $(ALL_DATASETS)
BINS        ?= 5 20
RUNS        ?= runs
SUBMISSIONS ?= submissions
MODEL       ?= langevin
SYNTH       ?=
SYNTH_SCALE ?= small
TRAIN_ARGS  ?=
ADDRESS     ?=
CPUS_PER_TASK ?= 1
GPUS_PER_TASK ?= 0
SEEDS       ?=
# The public targets are the real trials': generated data is scored by `nlbkit evaluate` instead.
TEST_TARGETS ?= $(if $(SYNTH),,$(DATA)/eval_data_test.h5)

# Which source a dataset folder was filled from: downloaded or generated (at which scale).
SOURCE := $(if $(SYNTH),.nlbkit-synth-$(SYNTH_SCALE),.nlbkit-fetched)

run_dir = $(RUNS)/$(1)_$(2)ms_$(3)_$(MODEL)
runs_of = $(foreach d,$(DATASETS),$(foreach b,$(BINS),$(call run_dir,$(d),$(b),$(1))))

# A narrowed DATASETS is a subset on purpose: validate does not warn about the scaled mc_maze sets.
SUBSET_FLAG := $(if $(filter-out $(DATASETS),$(ALL_DATASETS)),--subset)

LB_TEST_RUNS := $(call runs_of,test)
LB_VAL_RUNS  := $(call runs_of,val)
LB_TEST_FILE := $(SUBMISSIONS)/leaderboard_test.h5
LB_VAL_FILE  := $(SUBMISSIONS)/leaderboard_val.h5

$(DATA)/%/$(SOURCE): | venv
	$(if $(SYNTH),$(NLBKIT) synth $* --data-dir $(DATA) --scale $(SYNTH_SCALE),$(NLBKIT) fetch $* --data-dir $(DATA))
	touch $@

LB_TENSORS := $(foreach d,$(DATASETS),$(foreach b,$(BINS),$(DATA)/$(d)/tensors_$(b)ms.h5))

# Every run of a phase at once: `nlbkit train-all` skips the runs whose rates are newer than their
# tensors, resumes those with a checkpoint and trains the rest, as Ray tasks side by side.
TRAIN_ALL = $(NLBKIT) train-all $(DATASETS) $(addprefix --bin-ms ,$(BINS)) --model $(MODEL) \
  --data-dir $(DATA) --run-dir $(RUNS) $(if $(SEEDS),--seeds $(SEEDS)) --cpus-per-task $(CPUS_PER_TASK) \
  --gpus-per-task $(GPUS_PER_TASK) $(if $(ADDRESS),--address $(ADDRESS)) $(TRAIN_ARGS)

define dataset_bin_rules # dataset, bin
$(DATA)/$(1)/tensors_$(2)ms.h5: $(DATA)/$(1)/$(SOURCE)
	$(NLBKIT) prepare $(1) --bin-ms $(2) --data-dir $(DATA) --quiet
endef

$(foreach d,$(DATASETS),$(foreach b,$(BINS),$(eval $(call dataset_bin_rules,$(d),$(b)))))

$(addsuffix /rates.h5,$(LB_TEST_RUNS)) &: $(LB_TENSORS)
	$(TRAIN_ALL) --phase test

$(addsuffix /rates.h5,$(LB_VAL_RUNS)) &: $(LB_TENSORS)
	$(TRAIN_ALL) --phase val

$(LB_TEST_FILE): $(addsuffix /rates.h5,$(LB_TEST_RUNS))
	$(NLBKIT) submit $(LB_TEST_RUNS) --output $@

$(LB_VAL_FILE): $(addsuffix /rates.h5,$(LB_VAL_RUNS))
	$(NLBKIT) submit $(LB_VAL_RUNS) --output $@

# Test-phase scores need the public targets (`nlbkit fetch --targets`); without them the file is
# checked against the tensors only.
leaderboard: $(LB_TEST_FILE)
	$(NLBKIT) validate $< --phase test --data-dir $(DATA) $(SUBSET_FLAG) \
	  $(if $(wildcard $(TEST_TARGETS)),--targets $(TEST_TARGETS))
	@echo "upload: $(NLBKIT) submit $(LB_TEST_RUNS) --output $< --evalai  (see docs/evaluation.md)"

# The model's runs with the smoothing baseline's beside them where training made them.
leaderboard-val: $(LB_VAL_FILE)
	$(NLBKIT) validate $< --phase val --data-dir $(DATA) $(SUBSET_FLAG)
	$(NLBKIT) evaluate --data-dir $(DATA) $(foreach r,$(LB_VAL_RUNS),$(r) \
	  $(if $(filter langevin,$(MODEL)),$(wildcard $(patsubst %_langevin,%_smoothing,$(r)))))
