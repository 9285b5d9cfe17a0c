//! Strict weight loading: every model variable must be in the file with its shape, and every
//! tensor in the file must be a model variable. Errors name the file and the key.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

/// Why a weight file could not be loaded into a model.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{file}: cannot read weights: {reason}")]
    Read { file: PathBuf, reason: String },
    #[error("{file}: key `{key}` is required by the {model} but missing from the file{more}")]
    Missing { file: PathBuf, key: String, model: String, more: String },
    #[error("{file}: key `{key}` is not used by the {model}{more}")]
    Unused { file: PathBuf, key: String, model: String, more: String },
    #[error("{file}: key `{key}` has shape {found:?}, the {model} needs {expected:?}")]
    Shape { file: PathBuf, key: String, model: String, found: Vec<i64>, expected: Vec<i64> },
    #[error("{file}: {reason}")]
    Other { file: PathBuf, reason: String },
    #[error(transparent)]
    Card(#[from] super::card::CardError),
}

/// How many offending keys an error message lists after the first.
const MORE_KEYS_SHOWN: usize = 5;

fn more(keys: &[String]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = keys.iter().take(MORE_KEYS_SHOWN).map(String::as_str).collect();
    let rest = keys.len().saturating_sub(MORE_KEYS_SHOWN);
    let tail = if rest > 0 { format!(" and {rest} more") } else { String::new() };
    format!(" (also: {}{tail})", shown.join(", "))
}

/// Loads `file` into `vs`, strictly both ways: every model variable must be in the file with the
/// same shape, and every tensor in the file must be a model variable. BatchNorm's
/// `num_batches_tracked` buffers are accepted (present or not) next to a BatchNorm that the model
/// has, since official checkpoints carry them and inference never reads them.
pub fn load_strict(vs: &mut nn::VarStore, file: &Path, model: &str) -> Result<(), WeightsError> {
    let tensors = Tensor::read_safetensors(file)
        .map_err(|e| WeightsError::Read { file: file.to_path_buf(), reason: e.to_string() })?;
    let vars = vs.variables();
    let mut unused = Vec::new();
    let mut found: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in tensors {
        if let Some(prefix) = name.strip_suffix(".num_batches_tracked") {
            if vars.contains_key(&format!("{prefix}.running_mean")) {
                continue;
            }
        }
        if vars.contains_key(&name) {
            found.insert(name, t);
        } else {
            unused.push(name);
        }
    }
    unused.sort();
    none_of(&unused, file, model, true)?;
    let missing: Vec<String> =
        vars.keys().filter(|k| !found.contains_key(*k)).cloned().collect::<BTreeSet<_>>().into_iter().collect();
    none_of(&missing, file, model, false)?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let _guard = tch::no_grad_guard();
    for name in names {
        let (var, src) = (&vars[name], &found[name]);
        if var.size() != src.size() {
            return Err(WeightsError::Shape {
                file: file.to_path_buf(),
                key: name.clone(),
                model: model.into(),
                found: src.size(),
                expected: var.size(),
            });
        }
        let src = src
            .f_to_kind(var.kind())
            .map_err(|e| WeightsError::Other { file: file.to_path_buf(), reason: format!("key `{name}`: {e}") })?;
        var.shallow_clone().copy_(&src);
    }
    Ok(())
}

/// An error naming the first of `keys` (and a few more), if there are any: keys the file has and
/// the model does not use (`unused`), or keys the model needs and the file lacks.
fn none_of(keys: &[String], file: &Path, model: &str, unused: bool) -> Result<(), WeightsError> {
    let Some((key, rest)) = keys.split_first() else { return Ok(()) };
    let (file, key, model, more) = (file.to_path_buf(), key.clone(), model.to_string(), more(rest));
    Err(if unused {
        WeightsError::Unused { file, key, model, more }
    } else {
        WeightsError::Missing { file, key, model, more }
    })
}
