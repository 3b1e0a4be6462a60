//! The model registry: a folder of model files plus `registry.json`, which names the
//! champion (the model that serves) and any challengers. A model is checked in full (format,
//! version, digest, consistency) before it is given a role, so a bad file never serves.
//! Every change of role is appended to `history.jsonl`: who, when, why, what the gate
//! found and whether it was overridden.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Method, Model};
use crate::ModelError;

/// The roles file.
pub const ROLES_FILE: &str = "registry.json";

/// The promotions, one JSON object per line, oldest first; only ever appended to.
pub const HISTORY_FILE: &str = "history.jsonl";

/// One promotion, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    /// When (RFC 3339, UTC), as the caller's clock says.
    pub at: String,
    /// Who promoted: a person's name or a principal.
    pub by: String,
    /// The model promoted.
    pub id: String,
    /// `champion` or `challenger`.
    pub role: String,
    /// The champion it replaced, if any.
    #[serde(default)]
    pub previous: Option<String>,
    /// Why, in the promoter's words.
    #[serde(default)]
    pub reason: String,
    /// What the gate checked, each line a finding (empty when nothing was checked).
    #[serde(default)]
    pub checks: Vec<String>,
    /// Gate failures that were overridden, and the override's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overridden: Option<Override>,
}

impl Promotion {
    /// A promotion by `by` at `at` for `reason`; the registry fills in the model, its role
    /// and the champion it replaces.
    pub fn new(
        at: impl Into<String>,
        by: impl Into<String>,
        reason: impl Into<String>,
    ) -> Promotion {
        Promotion {
            at: at.into(),
            by: by.into(),
            id: String::new(),
            role: String::new(),
            previous: None,
            reason: reason.into(),
            checks: Vec::new(),
            overridden: None,
        }
    }
}

/// A promotion the gate refused and a person let through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    /// Why the gate was overridden.
    pub reason: String,
    /// What the gate refused.
    pub failures: Vec<String>,
}

/// Roles of the registry's models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// The serving model's id.
    pub champion: Option<String>,
    /// Challenger ids.
    pub challengers: Vec<String>,
}

/// One model file in the registry folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Model id.
    pub id: String,
    /// File name.
    pub file: String,
    /// Kind of model.
    pub method: Method,
    /// Creation time recorded in the model.
    pub created_at: Option<String>,
    /// Target.
    pub target: String,
    /// Characteristics used.
    pub features: usize,
    /// Set of the headline metrics (test if any).
    pub set: String,
    /// AUC on that set.
    pub auc: f64,
    /// KS on that set.
    pub ks: f64,
    /// `champion`, `challenger` or empty.
    pub role: String,
}

/// Files that are not valid models: (file name, why).
pub type Invalid = Vec<(String, String)>;

/// A registry folder.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry in `dir` (created on first promotion).
    pub fn new(dir: &Path) -> Registry {
        Registry {
            dir: dir.to_owned(),
        }
    }

    /// The roles file (the one file whose change means the champion may have changed).
    pub fn path(&self) -> PathBuf {
        self.dir.join(ROLES_FILE)
    }

    /// The current roles.
    pub fn roles(&self) -> Result<Roles, ModelError> {
        let path = self.dir.join(ROLES_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ModelError::Registry(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Roles::default()),
            Err(e) => Err(ModelError::Io(path.display().to_string(), e)),
        }
    }

    /// Every model file, with the files that are not valid models and why.
    pub fn scan(&self) -> Result<(Vec<(PathBuf, Model)>, Invalid), ModelError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ok, bad)),
            Err(e) => return Err(ModelError::Io(self.dir.display().to_string(), e)),
        };
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && p.file_name().is_some_and(|n| n != ROLES_FILE)
            })
            .collect();
        paths.sort();
        for p in paths {
            match Model::load(&p) {
                Ok(m) => ok.push((p, m)),
                Err(e) => bad.push((
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    e.to_string(),
                )),
            }
        }
        Ok((ok, bad))
    }

    /// The listing: valid models with their role and headline metrics, and invalid files.
    pub fn list(&self) -> Result<(Vec<Entry>, Invalid), ModelError> {
        let roles = self.roles()?;
        let (models, mut bad) = self.scan()?;
        for id in roles.champion.iter().chain(&roles.challengers) {
            if !models.iter().any(|(_, m)| &m.id == id) {
                bad.push((
                    ROLES_FILE.to_owned(),
                    format!("names {id}, which is not a valid model here"),
                ));
            }
        }
        let entries = models
            .into_iter()
            .map(|(p, m)| {
                let head = m.headline();
                Entry {
                    role: if roles.champion.as_deref() == Some(m.id.as_str()) {
                        "champion".into()
                    } else if roles.challengers.contains(&m.id) {
                        "challenger".into()
                    } else {
                        String::new()
                    },
                    file: p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    method: m.method,
                    created_at: m.created_at.clone(),
                    target: m.target.clone(),
                    features: m.features.len(),
                    set: head.map(|h| h.set.clone()).unwrap_or_default(),
                    auc: head.map_or(f64::NAN, |h| h.evaluation.metrics.auc),
                    ks: head.map_or(f64::NAN, |h| h.evaluation.metrics.ks),
                    id: m.id,
                }
            })
            .collect();
        Ok((entries, bad))
    }

    /// Finds a valid model by id (or file name).
    pub fn find(&self, id: &str) -> Result<(PathBuf, Model), ModelError> {
        let (models, bad) = self.scan()?;
        if let Some(found) = models
            .into_iter()
            .find(|(p, m)| m.id == id || p.file_name().is_some_and(|n| n.to_string_lossy() == id))
        {
            return Ok(found);
        }
        match bad.into_iter().find(|(f, _)| f == id) {
            Some((f, why)) => Err(ModelError::Registry(format!(
                "{f} is not a valid model: {why}"
            ))),
            None => Err(ModelError::NotInRegistry {
                id: id.to_owned(),
                dir: self.dir.display().to_string(),
            }),
        }
    }

    /// Makes a model the champion (the previous champion keeps no role) or adds it to the
    /// challengers, and appends the promotion to the history (`record`'s `id`, `role` and
    /// `previous` are filled in here). The model file is validated first.
    pub fn promote(
        &self,
        id: &str,
        challenger: bool,
        mut record: Promotion,
    ) -> Result<Roles, ModelError> {
        let (_, model) = self.find(id)?;
        let mut roles = self.roles()?;
        record.id = model.id.clone();
        record.role = if challenger { "challenger" } else { "champion" }.into();
        record.previous = roles.champion.clone().filter(|_| !challenger);
        roles.challengers.retain(|c| c != &model.id);
        if challenger {
            if roles.champion.as_deref() == Some(model.id.as_str()) {
                return Err(ModelError::Registry(format!(
                    "{} is the champion; promote another model first",
                    model.id
                )));
            }
            roles.challengers.push(model.id.clone());
        } else {
            roles.champion = Some(model.id.clone());
        }
        let path = self.dir.join(ROLES_FILE);
        let tmp = self.dir.join(format!("{ROLES_FILE}.tmp"));
        let mut bytes =
            serde_json::to_vec_pretty(&roles).map_err(|e| ModelError::Registry(e.to_string()))?;
        bytes.push(b'\n');
        let io = |e| ModelError::Io(path.display().to_string(), e);
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        self.append(&record)?;
        Ok(roles)
    }

    /// Appends one promotion to the history.
    fn append(&self, record: &Promotion) -> Result<(), ModelError> {
        use std::io::Write;
        let path = self.dir.join(HISTORY_FILE);
        let mut line =
            serde_json::to_vec(record).map_err(|e| ModelError::Registry(e.to_string()))?;
        line.push(b'\n');
        let io = |e| ModelError::Io(path.display().to_string(), e);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(&line).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Every promotion, oldest first.
    pub fn history(&self) -> Result<Vec<Promotion>, ModelError> {
        let path = self.dir.join(HISTORY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ModelError::Io(path.display().to_string(), e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(k, l)| {
                serde_json::from_str(l).map_err(|e| {
                    ModelError::Registry(format!("{}, line {}: {e}", path.display(), k + 1))
                })
            })
            .collect()
    }

    /// The champion model, loaded and checked.
    pub fn champion(&self) -> Result<Option<(PathBuf, Model)>, ModelError> {
        match self.roles()?.champion {
            None => Ok(None),
            Some(id) => self.find(&id).map(Some),
        }
    }
}
