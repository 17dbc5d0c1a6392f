// Run configs: a problem, training settings, and one or several optimizer configs.
#include <optreg/train/run.hpp>

#include <filesystem>

#include "config_yaml.hpp"

namespace optreg::train {

namespace {

using namespace optreg::detail;

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
  });
  return schema;
}

Value checked_value(const std::string& source, const Schema& schema, const YAML::Node& key, const YAML::Node& value,
                    const std::string& where) {
  if (value.IsNull()) fail(source, mark_of(key), "'" + key.Scalar() + "' has no value");
  const Value v = to_value(source, key.Scalar(), value);
  try {
    return schema.check(key.Scalar(), v, where);
  } catch (const OptionError& e) {
    fail(source, schema.find(key.Scalar()) == nullptr ? mark_of(key) : mark_of(value), e.what());
  }
}

void parse_problem(RunConfig& config, const YAML::Node& key, const YAML::Node& section) {
  const std::string& source = config.source;
  if (!section.IsMap()) fail(source, mark_of(section), std::string("section 'problem' must be a map, not ") + kind_of(section));
  const ProblemKind* kind = nullptr;
  std::vector<std::pair<YAML::Node, YAML::Node>> options;
  for (const auto& [k, v] : entries(source, section, "section 'problem'")) {
    if (k.Scalar() != "name") {
      options.emplace_back(k, v);
      continue;
    }
    if (!v.IsScalar() || v.Scalar().empty()) fail(source, mark_of(v), "'name' must be a problem name");
    config.problem = v.Scalar();
    config.problem_mark = mark_of(v);
    kind = find_problem(config.problem);
    if (kind == nullptr) {
      std::vector<std::string> known;
      for (const auto& p : problem_kinds()) known.push_back(p.name);
      fail(source, mark_of(v), "unknown problem '" + config.problem + "'" + suggestion(config.problem, known) +
                                   "; known problems: " + join(known));
    }
  }
  if (kind == nullptr) fail(source, mark_of(key), "section 'problem' needs a 'name' (such as 'name: mlp')");
  Options given;
  const std::string where = "problem '" + kind->name + "'";
  for (const auto& [k, v] : options) given[k.Scalar()] = checked_value(source, kind->schema, k, v, where);
  config.problem_options = kind->schema.resolve(kind->schema.defaults(), given, where);
  if (kind->check) {
    try {
      kind->check(config.problem_options);
    } catch (const OptionError& e) {
      fail(source, mark_of(section), where + ": " + e.what());
    }
  }
}

void parse_train(RunConfig& config, const YAML::Node& section) {
  const std::string& source = config.source;
  if (!section.IsMap()) fail(source, mark_of(section), std::string("section 'train' must be a map, not ") + kind_of(section));
  const Schema& schema = train_schema();
  Options given;
  std::vector<std::pair<YAML::Node, YAML::Node>> items = entries(source, section, "section 'train'");
  for (const auto& [k, v] : items) {
    given[k.Scalar()] = checked_value(source, schema, k, v, "section 'train'");
    config.train_marks[k.Scalar()] = mark_of(v);
  }
  config.train_marks["train"] = mark_of(section);
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
  const bool has_steps = given.count("steps") != 0;
  const bool has_epochs = given.count("epochs") != 0;
  if (has_steps == has_epochs) {
    fail(source, mark_of(section), has_steps ? "section 'train' gives both 'steps' and 'epochs'; give one"
                                             : "section 'train' needs 'steps' or 'epochs'");
  }
  for (const auto& [k, v] : items) {
    if ((k.Scalar() == "steps" && t.steps == 0) || (k.Scalar() == "epochs" && !(t.epochs > 0))) {
      fail(source, mark_of(v), "'" + k.Scalar() + "' must be above 0");
    }
  }
}

}  // namespace

RunConfig parse_run_config(const std::string& text, const std::string& source, const std::string& base_dir) {
  RunConfig config;
  config.source = source;
  const YAML::Node root = load_yaml(text, source);
  if (!root.IsMap()) {
    fail(source, mark_of(root), std::string("a run config must be a map with 'problem' and 'train' sections, not ") +
                                    (root.IsNull() || !root.IsDefined() ? std::string("an empty document") : kind_of(root)));
  }
  try {
    bool has_problem = false;
    bool has_train = false;
    bool has_optimizer = false;
    YAML::Node runs;
    bool has_runs = false;
    std::vector<YAML::Node> others;
    for (const auto& [key, value] : entries(source, root, "the config")) {
      const std::string& s = key.Scalar();
      if (s == "problem") {
        parse_problem(config, key, value);
        has_problem = true;
      } else if (s == "train") {
        parse_train(config, value);
        has_train = true;
      } else if (s == "runs") {
        runs = value;
        has_runs = true;
        if (!runs.IsSequence()) fail(source, mark_of(value), std::string("section 'runs' must be a list, not ") + kind_of(value));
        if (runs.size() == 0) fail(source, mark_of(value), "section 'runs' is empty; it needs at least one run");
      } else {
        has_optimizer = has_optimizer || s == "optimizer";
        others.push_back(key);
      }
    }
    if (!has_problem) fail(source, mark_of(root), "the config has no 'problem' section");
    if (!has_train) fail(source, mark_of(root), "the config has no 'train' section");
    if (has_runs && has_optimizer) {
      fail(source, mark_of(root["optimizer"]),
           "the config has both 'runs' and an 'optimizer' section; give each run its own 'optimizer'");
    }
    if (!has_runs) {
      // One optimizer config beside the run sections; parse_config_node checks the rest.
      RunSpec run;
      run.optimizer = parse_config_node(root, source, base_dir, kRunSections);
      run.label = run.optimizer.optimizer;
      run.label_mark = run.optimizer.optimizer_mark;
      config.runs.push_back(std::move(run));
      return config;
    }
    for (const auto& key : others) {
      fail(source, mark_of(key), "unknown section '" + key.Scalar() + "'" + suggestion(key.Scalar(), kRunSections) +
                                     " in a config with 'runs'; known sections: " + join(kRunSections) +
                                     " (optimizer sections go inside each run)");
    }
    config.is_comparison = true;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const YAML::Node r = runs[i];
      const std::string what = "runs[" + std::to_string(i) + "]";
      if (!r.IsMap()) fail(source, mark_of(r), what + " must be a map with 'label' and 'optimizer', not " + kind_of(r));
      RunSpec run;
      ConfigMark label_mark = mark_of(r);
      for (const auto& [k, v] : entries(source, r, what)) {
        if (k.Scalar() == "label") {
          if (!v.IsScalar() || v.Scalar().empty()) fail(source, mark_of(v), what + ".label must be a non-empty string");
          run.label = v.Scalar();
          label_mark = mark_of(v);
        }
      }
      run.optimizer = parse_config_node(r, source, base_dir, {"label"});
      run.label_mark = run.label.empty() ? run.optimizer.optimizer_mark : label_mark;
      if (run.label.empty()) run.label = run.optimizer.optimizer;
      for (const auto& other : config.runs) {
        if (other.label == run.label) {
          fail(source, label_mark, what + " has the label '" + run.label +
                                       "' of an earlier run; give each run its own 'label'");
        }
      }
      config.runs.push_back(std::move(run));
    }
  } catch (const YAML::Exception& e) {
    fail(source, mark_of(e.mark), "YAML error: " + e.msg);
  }
  return config;
}

RunConfig load_run_config(const std::string& path) {
  const std::string text = read_text_file(path, "config file");
  return parse_run_config(text, path, std::filesystem::absolute(path).parent_path().string());
}

}  // namespace optreg::train
