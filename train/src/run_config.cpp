// Run configs: a problem, training settings, and one or several optimizer configs.
#include <optreg/train/run.hpp>

#include <filesystem>
#include <optional>

#include <optreg/config_document.hpp>

namespace optreg::train {

namespace {

const std::vector<std::string> kRunSections = {"problem", "train", "runs"};

Hyperparameter setting(const std::string& name, ValueType type, Value def, Range range, const std::string& meaning) {
  return Hyperparameter{name, type, std::move(def), range, 0, {}, meaning};
}

const Schema& train_schema() {
  constexpr double kInf = HUGE_VAL;
  static const Schema schema({
      setting("seed", ValueType::Int, Value(0), Range{0, 9.0e15, false, false},
              "seed of the initialisation and of the data order"),
      setting("steps", ValueType::Int, Value(0), Range{0, 1e12, false, false}, "number of steps (or give epochs)"),
      setting("epochs", ValueType::Float, Value(0.0), Range{0, 1e6, false, false},
              "number of passes over the training set (or give steps)"),
      setting("batch_size", ValueType::Int, Value(128), Range{1, 1e7, false, false}, "examples per step"),
      setting("log_every", ValueType::Int, Value(50), Range{1, 1e12, false, false}, "steps between metric rows"),
      setting("eval_every", ValueType::Int, Value(0), Range{0, 1e12, false, false},
              "steps between test-set evaluations (0: once per epoch)"),
      setting("checkpoint_every", ValueType::Int, Value(0), Range{0, 1e12, false, false},
              "steps between checkpoints (0: only at the end)"),
      setting("target_loss", ValueType::Float, Value(std::nan("")), Range{-kInf, kInf, false, false},
              "training loss that 'steps to target' counts up to"),
      Hyperparameter{"on_divergence", ValueType::String, Value("stop"), Range{}, 0, {"stop", "continue"},
                     "what a run does when its loss or parameters stop being finite"},
      Hyperparameter{"param_dtype", ValueType::String, Value("float32"), Range{}, 0, {"float32", "bfloat16", "float16"},
                     "dtype the optimizer steps the parameters in (loss and gradients are computed in float32)"},
  });
  return schema;
}

void parse_problem(RunConfig& config, const ConfigEntry& problem) {
  const ConfigNode& section = problem.value;
  if (!section.is_map()) section.fail(std::string("section 'problem' must be a map, not ") + section.kind_name());
  const ProblemKind* kind = nullptr;
  std::vector<ConfigEntry> options;
  for (const auto& e : section.entries("section 'problem'")) {
    if (e.key.text() != "name") {
      options.push_back(e);
      continue;
    }
    const ConfigNode& v = e.value;
    if (!v.is_scalar() || v.text().empty()) v.fail("'name' must be a problem name");
    config.problem = v.text();
    config.problem_mark = v.mark();
    kind = find_problem(config.problem);
    if (kind == nullptr) {
      std::vector<std::string> known;
      for (const auto& p : problem_kinds()) known.push_back(p.name);
      v.fail("unknown problem '" + config.problem + "'" + did_you_mean(config.problem, known) +
             "; known problems: " + join_names(known));
    }
  }
  if (kind == nullptr) problem.key.fail("section 'problem' needs a 'name' (such as 'name: mlp')");
  Options given;
  const std::string where = "problem '" + kind->name + "'";
  for (const auto& e : options) given[e.key.text()] = checked_option(kind->schema, e, where);
  config.problem_options = kind->schema.resolve(kind->schema.defaults(), given, where);
  if (kind->check) {
    try {
      kind->check(config.problem_options);
    } catch (const OptionError& e) {
      section.fail(where + ": " + e.what());
    }
  }
}

void parse_train(RunConfig& config, const ConfigNode& section) {
  if (!section.is_map()) section.fail(std::string("section 'train' must be a map, not ") + section.kind_name());
  const Schema& schema = train_schema();
  Options given;
  const std::vector<ConfigEntry> items = section.entries("section 'train'");
  for (const auto& e : items) {
    given[e.key.text()] = checked_option(schema, e, "section 'train'");
    config.train_marks[e.key.text()] = e.value.mark();
  }
  config.train_marks["train"] = section.mark();
  const Options o = schema.resolve(schema.defaults(), given, "section 'train'");
  TrainSettings& t = config.train;
  t.seed = static_cast<std::uint64_t>(o.at("seed").as_int());
  t.steps = o.at("steps").as_int();
  t.epochs = o.at("epochs").as_float();
  t.batch_size = o.at("batch_size").as_int();
  t.log_every = o.at("log_every").as_int();
  t.eval_every = o.at("eval_every").as_int();
  t.checkpoint_every = o.at("checkpoint_every").as_int();
  t.target_loss = o.at("target_loss").as_float();
  t.continue_on_divergence = o.at("on_divergence").as_string() == "continue";
  t.param_dtype = dtype_from_name(o.at("param_dtype").as_string());
  const bool has_steps = given.count("steps") != 0;
  const bool has_epochs = given.count("epochs") != 0;
  if (has_steps == has_epochs) {
    section.fail(has_steps ? "section 'train' gives both 'steps' and 'epochs'; give one"
                           : "section 'train' needs 'steps' or 'epochs'");
  }
  for (const auto& e : items) {
    const std::string& k = e.key.text();
    if ((k == "steps" && t.steps == 0) || (k == "epochs" && !(t.epochs > 0))) e.value.fail("'" + k + "' must be above 0");
  }
}

/// The label of a run that gives none: its optimizer's name, inside its wrappers' names.
std::string default_label(const OptimizerConfig& o) {
  return o.wrappers.empty() ? o.optimizer : optimizer_names(o);
}

/// One run of a comparison, `what` in messages (runs[1]): a map with an optional 'label' beside
/// its optimizer sections. `label_mark` is where the label is written (the run's own place
/// when it has none).
RunSpec parse_run(const ConfigNode& r, const std::string& what, const std::string& base_dir, ConfigMark& label_mark) {
  if (!r.is_map()) r.fail(what + " must be a map with 'label' and 'optimizer', not " + r.kind_name());
  RunSpec run;
  label_mark = r.mark();
  for (const auto& e : r.entries(what)) {
    if (e.key.text() == "label") {
      if (!e.value.is_scalar() || e.value.text().empty()) e.value.fail(what + ".label must be a non-empty string");
      run.label = e.value.text();
      label_mark = e.value.mark();
    } else if (e.key.text() == "param_dtype") {
      const Value v = checked_option(train_schema(), e, what);
      run.param_dtype = dtype_from_name(v.as_string());
      run.param_dtype_mark = e.value.mark();
    }
  }
  run.optimizer = parse_config_sections(r, base_dir, {"label", "param_dtype"});
  run.label_mark = run.label.empty() ? run.optimizer.optimizer_mark : label_mark;
  if (run.label.empty()) run.label = default_label(run.optimizer);
  return run;
}

/// The runs of a comparison, each with a label of its own.
void parse_runs(RunConfig& config, const ConfigNode& runs, const std::string& base_dir) {
  std::size_t index = 0;
  for (const ConfigNode& r : runs.items()) {
    const std::string what = "runs[" + std::to_string(index++) + "]";
    ConfigMark label_mark;
    RunSpec run = parse_run(r, what, base_dir, label_mark);
    for (const auto& other : config.runs) {
      if (other.label == run.label) {
        throw_config_error(config.source, label_mark,
                           what + " has the label '" + run.label + "' of an earlier run; give each run its own 'label'");
      }
    }
    config.runs.push_back(std::move(run));
  }
}

/// The sections of a run config beside 'problem' and 'train'.
struct OtherSections {
  std::optional<ConfigNode> runs;
  std::optional<ConfigNode> optimizer;  // the first 'optimizer' section
  std::vector<ConfigNode> keys;         // the key of every section but problem, train and runs
};

/// Parses the 'problem' and 'train' sections into `config`, which both must be there; returns
/// the other sections.
OtherSections read_sections(RunConfig& config, const ConfigNode& root) {
  if (!root.is_map()) {
    const std::string found = root.is_null() ? std::string("an empty document") : root.kind_name();
    root.fail("a run config must be a map with 'problem' and 'train' sections, not " + found);
  }
  bool has_problem = false;
  bool has_train = false;
  OtherSections other;
  for (const auto& e : root.entries("the config")) {
    const std::string& s = e.key.text();
    if (s == "problem") {
      parse_problem(config, e);
      has_problem = true;
    } else if (s == "train") {
      parse_train(config, e.value);
      has_train = true;
    } else if (s == "runs") {
      other.runs = e.value;
      if (!other.runs->is_list()) other.runs->fail(std::string("section 'runs' must be a list, not ") + other.runs->kind_name());
      if (other.runs->size() == 0) other.runs->fail("section 'runs' is empty; it needs at least one run");
    } else {
      if (s == "optimizer" && !other.optimizer) other.optimizer = e.value;
      other.keys.push_back(e.key);
    }
  }
  if (!has_problem) root.fail("the config has no 'problem' section");
  if (!has_train) root.fail("the config has no 'train' section");
  return other;
}

/// A run config from its document.
RunConfig run_config_of(const ConfigNode& root, const std::string& base_dir) {
  RunConfig config;
  config.source = root.source();
  const OtherSections other = read_sections(config, root);
  if (other.runs && other.optimizer) {
    other.optimizer->fail("the config has both 'runs' and an 'optimizer' section; give each run its own 'optimizer'");
  }
  if (!other.runs) {
    // One optimizer config beside the run sections; parse_config_sections checks the rest.
    RunSpec run;
    run.optimizer = parse_config_sections(root, base_dir, kRunSections);
    run.label = default_label(run.optimizer);
    run.label_mark = run.optimizer.optimizer_mark;
    config.runs.push_back(std::move(run));
    return config;
  }
  for (const auto& key : other.keys) {
    key.fail("unknown section '" + key.text() + "'" + did_you_mean(key.text(), kRunSections) +
             " in a config with 'runs'; known sections: " + join_names(kRunSections) +
             " (optimizer sections go inside each run)");
  }
  config.is_comparison = true;
  parse_runs(config, *other.runs, base_dir);
  return config;
}

}  // namespace

RunConfig parse_run_config(const std::string& text, const std::string& source, const std::string& base_dir) {
  return run_config_of(parse_config_document(text, source), base_dir);
}

RunConfig load_run_config(const std::string& path) {
  const ConfigNode root = load_config_document(path);
  return run_config_of(root, std::filesystem::absolute(path).parent_path().string());
}

}  // namespace optreg::train
