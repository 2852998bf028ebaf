//! How Argo CD and Flux judge Delenda's objects, run here as they run
//! there: the Argo CD health checks and actions in
//! `argocd/resource_customizations/` in a Lua 5.1 VM with the libraries
//! Argo CD gives them (base, table, package and an `os` with only `date`
//! and `time`; no `string`, no `math`), the object as the global `obj`
//! (a table, arrays indexed from 1, numbers as floats, as gopher-lua holds
//! them); and the Flux health-check expressions in
//! `flux/health-check-exprs.yaml` with a CEL evaluator, in the order
//! kustomize-controller evaluates them.

use std::path::{Path, PathBuf};

use mlua::{Lua, LuaOptions, StdLib, Table, Value};

/// Where the Argo CD resource customizations of the `delenda.dev` group live.
pub fn customizations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("argocd/resource_customizations/delenda.dev")
}

/// An Argo CD health status and message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Health {
    pub status: String,
    #[serde(default)]
    pub message: String,
}

/// The clock the Lua `os` library reads: the real one, or Argo CD's test
/// runner's frozen one (Go's zero time, 0001-01-01T00:00:00Z).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Real,
    Frozen,
}

/// A VM with the libraries Argo CD opens for health checks and actions.
fn vm(clock: Clock) -> Lua {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::PACKAGE | StdLib::OS, LuaOptions::default()).expect("Lua starts");
    let full: Table = lua.globals().get("os").unwrap();
    let safe = lua.create_table().unwrap();
    match clock {
        Clock::Real => {
            safe.set("date", full.get::<mlua::Function>("date").unwrap()).unwrap();
            safe.set("time", full.get::<mlua::Function>("time").unwrap()).unwrap();
        }
        Clock::Frozen => {
            let zero = jiff::civil::date(1, 1, 1).at(0, 0, 0, 0).to_zoned(jiff::tz::TimeZone::UTC).unwrap();
            let date = lua
                .create_function(move |_, format: Option<String>| {
                    let format = format.unwrap_or_else(|| "%c".into());
                    let format = format.strip_prefix('!').unwrap_or(&format).to_owned();
                    jiff::fmt::strtime::format(format.as_str(), &zero).map_err(mlua::Error::external)
                })
                .unwrap();
            safe.set("date", date).unwrap();
            safe.set("time", lua.create_function(|_, ()| Ok(-62135596800f64)).unwrap()).unwrap();
        }
    }
    lua.globals().set("os", safe).unwrap();
    lua
}

/// A JSON value as gopher-lua holds it in Argo CD.
fn to_lua(lua: &Lua, value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap()),
        serde_json::Value::String(s) => Value::String(lua.create_string(s).unwrap()),
        serde_json::Value::Array(items) => {
            let t = lua.create_table().unwrap();
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)).unwrap();
            }
            Value::Table(t)
        }
        serde_json::Value::Object(map) => {
            let t = lua.create_table().unwrap();
            for (k, v) in map {
                t.raw_set(k.as_str(), to_lua(lua, v)).unwrap();
            }
            Value::Table(t)
        }
    }
}

/// A Lua value back as JSON: a table keyed 1..n is an array.
fn from_lua(value: &Value) -> serde_json::Value {
    match value {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Integer(i) => (*i).into(),
        Value::Number(f) if f.fract() == 0.0 && f.abs() < 9e15 => (*f as i64).into(),
        Value::Number(f) => (*f).into(),
        Value::String(s) => s.to_str().unwrap().to_string().into(),
        Value::Table(t) => {
            let n = t.raw_len();
            let pairs: Vec<(Value, Value)> = t.pairs::<Value, Value>().map(Result::unwrap).collect();
            if n > 0 && pairs.len() == n {
                (1..=n).map(|i| from_lua(&t.raw_get::<Value>(i).unwrap())).collect::<Vec<_>>().into()
            } else {
                let map = pairs
                    .iter()
                    .map(|(k, v)| (k.as_string().expect("string keys").to_str().unwrap().to_string(), from_lua(v)))
                    .collect::<serde_json::Map<_, _>>();
                serde_json::Value::Object(map)
            }
        }
        other => panic!("a Lua script returned a {}", other.type_name()),
    }
}

fn run(lua: &Lua, path: &Path, obj: &serde_json::Value) -> Value {
    let script = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    lua.globals().set("obj", to_lua(lua, obj)).unwrap();
    lua.load(script).set_name(path.display().to_string()).eval().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Argo CD health of `obj` by its kind's health.lua.
pub fn argo_health(obj: &serde_json::Value) -> Health {
    let kind = obj["kind"].as_str().expect("an object with a kind");
    let lua = vm(Clock::Real);
    let result = run(&lua, &customizations().join(kind).join("health.lua"), obj);
    let Value::Table(t) = result else { panic!("health.lua of {kind} returned no table") };
    Health {
        status: t.get::<Option<String>>("status").unwrap().unwrap_or_default(),
        message: t.get::<Option<String>>("message").unwrap().unwrap_or_default(),
    }
}

/// The actions Argo CD offers on `obj`: (name, disabled), by name.
pub fn argo_actions(obj: &serde_json::Value) -> Vec<(String, bool)> {
    let kind = obj["kind"].as_str().unwrap();
    let lua = vm(Clock::Real);
    let result = run(&lua, &customizations().join(kind).join("actions/discovery.lua"), obj);
    let Value::Table(t) = result else { panic!("discovery.lua of {kind} returned no table") };
    let mut actions: Vec<(String, bool)> = t
        .pairs::<String, Table>()
        .map(|p| {
            let (name, action) = p.unwrap();
            (name, action.get::<Option<bool>>("disabled").unwrap().unwrap_or(false))
        })
        .collect();
    actions.sort();
    actions
}

/// The object Argo CD's action `name` makes of `obj`.
pub fn argo_action(obj: &serde_json::Value, name: &str, clock: Clock) -> serde_json::Value {
    let kind = obj["kind"].as_str().unwrap();
    let path = customizations().join(kind).join("actions").join(name).join("action.lua");
    from_lua(&run(&vm(clock), &path, obj))
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`, as Argo CD
/// computes it to apply an action; numbers compare by value, since the Lua
/// VM turns every number into a float.
pub fn merge_patch(from: &serde_json::Value, to: &serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    match (from, to) {
        (J::Object(a), J::Object(b)) => {
            let mut patch = serde_json::Map::new();
            for (k, v) in b {
                match a.get(k) {
                    Some(old) => {
                        if let Some(p) = merge_patch(old, v) {
                            patch.insert(k.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                patch.insert(k.clone(), J::Null);
            }
            (!patch.is_empty()).then_some(J::Object(patch))
        }
        (J::Number(a), J::Number(b)) if a.as_f64() == b.as_f64() => None,
        (J::Array(a), J::Array(b))
            if a.len() == b.len() && a.iter().zip(b).all(|(x, y)| merge_patch(x, y).is_none()) =>
        {
            None
        }
        (a, b) if a == b => None,
        (_, b) => Some(b.clone()),
    }
}

/// One entry of flux/health-check-exprs.yaml.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxCheck {
    pub api_version: String,
    pub kind: String,
    pub current: String,
    #[serde(default)]
    pub in_progress: Option<String>,
    #[serde(default)]
    pub failed: Option<String>,
}

/// The Flux health-check expressions as committed.
pub fn flux_checks() -> Vec<FluxCheck> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("flux/health-check-exprs.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn evaluate(expr: &str, obj: &serde_json::Value) -> Result<bool, String> {
    let program = cel::Program::compile(expr).map_err(|e| format!("{expr}: {e}"))?;
    let mut context = cel::Context::default();
    // The object's top-level fields are the expression's variables.
    for (k, v) in obj.as_object().unwrap() {
        context.add_variable(k.as_str(), v.clone()).map_err(|e| e.to_string())?;
    }
    match program.execute(&context).map_err(|e| format!("{expr}: {e}"))? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("{expr} gave {other:?}, not a bool")),
    }
}

/// Flux's verdict on `obj`: Current, InProgress or Failed, as
/// kustomize-controller's CEL status evaluator reaches it: a status about
/// an older generation is InProgress; then inProgress, failed and current
/// in that order, the first true one deciding; none is InProgress.
pub fn flux_health(obj: &serde_json::Value) -> Result<&'static str, String> {
    let checks = flux_checks();
    let (api_version, kind) = (obj["apiVersion"].as_str().unwrap(), obj["kind"].as_str().unwrap());
    let check = checks
        .iter()
        .find(|c| c.api_version == api_version && c.kind == kind)
        .ok_or_else(|| format!("no health check for {api_version} {kind}"))?;
    if let (Some(observed), Some(generation)) =
        (obj.pointer("/status/observedGeneration").and_then(|v| v.as_i64()), obj["metadata"]["generation"].as_i64())
        && observed != generation
    {
        return Ok("InProgress");
    }
    for (expr, verdict) in [
        (check.in_progress.as_deref(), "InProgress"),
        (check.failed.as_deref(), "Failed"),
        (Some(&*check.current), "Current"),
    ] {
        if let Some(expr) = expr
            && evaluate(expr, obj)?
        {
            return Ok(verdict);
        }
    }
    Ok("InProgress")
}
