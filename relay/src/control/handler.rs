//! What the daemon does with a control request: a function of the controller's state and the
//! request, with no sockets involved (tested directly).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::protocol::{Command, ErrorKind, ListedRule, Reply, Request, Response};
use crate::config;
use crate::dataplane::Snapshot;
use crate::fastpath::{Pending, PlanReport};
use crate::membership::Memberships;
use crate::rules::{Path, RuleError, RuleSet, RuleTable};
use crate::runtime::Runtime;
use crate::stats::collect::Identity;

/// How long a rule change waits for every worker to adopt the new table before replying.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Changes the log filter; returns an error message for a bad filter.
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// Resolves interface names to indices (the kernel's, in production).
pub type Resolve = fn(&str) -> std::io::Result<u32>;

/// The control plane's state: the rule set in force and how to apply a new one.
pub struct Controller {
    rules: RuleSet,
    generation: u64,
    runtime: Arc<Runtime>,
    identity: Identity,
    config_path: Option<PathBuf>,
    set_log_level: LogLevelSetter,
    memberships: Memberships,
    resolve: Resolve,
    /// Indices of interfaces the table uses that were deleted and are not handled yet (see
    /// [`Controller::refresh_interfaces`]).
    deleted: std::collections::BTreeSet<u32>,
    /// Input names the published table has its rules wait for (gone interfaces).
    waiting_for: Vec<String>,
    /// When the fast path's periodic re-plan may run again (see [`Self::refresh_fast_path`]).
    next_refresh: std::time::Instant,
    /// The file's settings besides rules and `[dataplane]` as mcrd runs them (see
    /// [`Self::follow_settings`]); `None` until the daemon says what it started with.
    settings: Option<FileSettings>,
}

/// The settings of the config file besides its rules and `[dataplane]` (which the stats
/// identity keeps): a reload applies a changed `log_level` and names the others, which only
/// a restart applies.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSettings {
    pub log_level: Option<String>,
    pub log_format: config::LogFormat,
    pub control: config::ControlConfig,
    pub metrics: config::MetricsConfig,
}

impl FileSettings {
    pub fn of(cfg: &config::Config) -> Self {
        Self {
            log_level: cfg.log_level.clone(),
            log_format: cfg.log_format,
            control: cfg.control.clone(),
            metrics: cfg.metrics.clone(),
        }
    }
}

/// Why a rule set was not put in force.
#[derive(Debug)]
pub enum InForceError<E> {
    /// Its table could not be built; nothing changed.
    Rules(RuleError),
    /// The start-up step run after publishing failed.
    Hook(E),
}

/// The periodic re-plan of the fast path takes at most 1 / (1 + this) of a core: after a
/// re-plan that took T, the next waits at least T x this. A re-plan walks every rule, so
/// with a fixed period an idle daemon's CPU grew with its rules (100,000: 17% of a core).
const REFRESH_IDLE_RATIO: u32 = 49;

impl Controller {
    /// A controller for a data plane whose table (generation `generation`, built from
    /// `rules`) is already published in `runtime`'s data plane.
    pub fn new(
        rules: RuleSet,
        generation: u64,
        runtime: Arc<Runtime>,
        identity: Identity,
        set_log_level: LogLevelSetter,
        memberships: Memberships,
        resolve: Resolve,
    ) -> Self {
        let config_path = identity.config_path.as_ref().map(PathBuf::from);
        Self {
            rules,
            generation,
            runtime,
            identity,
            config_path,
            set_log_level,
            memberships,
            resolve,
            deleted: Default::default(),
            waiting_for: Vec::new(),
            next_refresh: std::time::Instant::now(),
            settings: None,
        }
    }

    /// The settings mcrd started with, which later reloads are compared with.
    pub fn started_with(&mut self, settings: FileSettings) {
        self.settings = Some(settings);
    }

    /// Handles one request line.
    pub fn handle_line(&mut self, line: &[u8]) -> Response {
        match super::protocol::parse_request(line) {
            Ok(req) => self.handle(req),
            Err(reply) => reply,
        }
    }

    pub fn handle(&mut self, req: Request) -> Response {
        match req.request {
            Command::Ping => pong(),
            Command::Stats => Response::ok(Reply::Stats(Box::new(
                self.runtime.stats(&self.identity, false),
            ))),
            Command::RulesList => Response::ok(Reply::Rules(self.listed_rules(None, None, None))),
            Command::RulesPage { flow, after, limit } => match flow {
                Some(name) if self.rules.get(&name).is_none() => Response::error(
                    ErrorKind::NotFound,
                    format!("no rule named `{}`", name.escape_debug()),
                ),
                _ => Response::ok(Reply::Rules(self.listed_rules(
                    flow.as_deref(),
                    after.as_deref(),
                    limit,
                ))),
            },
            Command::StatsPage { flow, limit } => {
                if let Some(name) = flow.as_deref().filter(|n| self.rules.get(n).is_none()) {
                    return Response::error(
                        ErrorKind::NotFound,
                        format!("no rule named `{}`", name.escape_debug()),
                    );
                }
                let mut report = self.runtime.stats(&self.identity, false);
                if let Some(name) = flow.as_deref() {
                    report.flows.retain(|f| f.rule == name);
                }
                if let Some(n) = limit {
                    report.flows.truncate(n as usize);
                }
                Response::ok(Reply::Stats(Box::new(report)))
            }
            Command::RulesAdd { rule } => {
                let name = rule.name.clone();
                let mut next = self.rules.clone();
                if let Err(e) = next.add(rule) {
                    return rule_error(e);
                }
                self.apply(next, format!("rule `{name}` added"))
            }
            Command::RulesRemove { name } => {
                let mut next = self.rules.clone();
                if let Err(e) = next.remove(&name) {
                    return rule_error(e);
                }
                self.apply(next, format!("rule `{name}` removed"))
            }
            Command::ConfigReload => self.reload(),
            Command::LogLevel { level } => match (self.set_log_level)(&level) {
                Ok(()) => Response::ok(Reply::Done {
                    message: format!("log level set to `{level}`"),
                }),
                Err(e) => Response::error(ErrorKind::Rejected, e),
            },
        }
    }

    /// Re-reads the config file and applies its rules atomically; on any error the rules in
    /// force stay. Rules added at run time are replaced: the file is the source of truth.
    ///
    /// The file is read until it stops changing (a writer caught mid-way), a file with no
    /// rules may replace a non-empty table only when it says `allow_empty = true`, and what
    /// the reload added, removed and changed is logged at WARN: a reload that stops
    /// forwarding is never silent.
    pub fn reload(&mut self) -> Response {
        let Some(path) = self.config_path.clone() else {
            return Response::error(
                ErrorKind::Rejected,
                "the daemon was started without a config file",
            );
        };
        let cfg = match config::parse_file_settled(&path) {
            Ok(c) => c,
            Err(e) => {
                return Response::error(
                    ErrorKind::Rejected,
                    format!("reload refused, old rules stay: {e}"),
                )
            }
        };
        // Taken before the rules are moved out of `cfg`.
        let settings = FileSettings::of(&cfg);
        let dataplane_changed = cfg.dataplane != self.identity.dataplane;
        let level = cfg.log_filter(std::env::var("RUST_LOG").ok().as_deref());
        let next = match RuleSet::from_specs(cfg.rules) {
            Ok(s) => s,
            Err(e) => {
                return Response::error(
                    ErrorKind::Rejected,
                    format!("reload refused, old rules stay: {e}"),
                )
            }
        };
        if next.is_empty() && !self.rules.is_empty() && !cfg.allow_empty {
            return Response::error(
                ErrorKind::Rejected,
                format!(
                    "reload refused, old rules stay: {} has no rules but {} are in force (a \
                     file caught half-written?); to remove every rule, put \
                     `allow_empty = true` at the top of the file",
                    path.display(),
                    self.rules.len()
                ),
            );
        }
        let diff = self.rules.diff(&next);
        let n = next.len();
        let response = self.apply(next, format!("reloaded {}: {n} rules", path.display()));
        if response.ok {
            self.follow_settings(&path, settings, dataplane_changed, &level);
            if diff.is_empty() {
                tracing::info!("reload of {}: no rule changed", path.display());
            } else {
                tracing::warn!("reload of {}: {diff}", path.display());
            }
        }
        response
    }

    /// After a reload was applied: sets the file's `log_level` when it changed since the file
    /// was last read (a `log-level` request in between stays until then), and names at WARN
    /// the changed settings that only a restart applies, so none is ignored in silence.
    /// `level` is the filter the file asks for (see [`config::Config::log_filter`]).
    fn follow_settings(
        &mut self,
        path: &std::path::Path,
        next: FileSettings,
        dataplane_changed: bool,
        level: &str,
    ) {
        let restart = self.restart_needed(&next, dataplane_changed);
        if !restart.is_empty() {
            tracing::warn!(
                "reload of {}: {} changed; the change takes effect only when mcrd restarts",
                path.display(),
                restart.join(", ")
            );
        }
        let Some(running) = self.settings.as_mut() else {
            return;
        };
        if next.log_level != running.log_level {
            match (self.set_log_level)(level) {
                Ok(()) => {
                    tracing::info!("reload of {}: log level set to `{level}`", path.display())
                }
                Err(e) => tracing::warn!("reload of {}: log level unchanged: {e}", path.display()),
            }
            running.log_level = next.log_level;
        }
    }

    /// The settings of `next` that differ from those mcrd runs with and only a restart
    /// applies.
    fn restart_needed(&self, next: &FileSettings, dataplane_changed: bool) -> Vec<&'static str> {
        let mut restart = Vec::new();
        if dataplane_changed {
            restart.push("[dataplane]");
        }
        if let Some(running) = &self.settings {
            if next.control != running.control {
                restart.push("[control]");
            }
            if next.metrics != running.metrics {
                restart.push("[metrics]");
            }
            if next.log_format != running.log_format {
                restart.push("log_format");
            }
        }
        restart
    }

    /// Builds, publishes and waits for adoption of a table for `next`; on failure nothing
    /// changes.
    fn apply(&mut self, next: RuleSet, message: String) -> Response {
        let no_hook = |_: &PlanReport| Ok::<(), std::convert::Infallible>(());
        match self.put_in_force(next, &message, no_hook) {
            Ok(((), true)) => Response::ok(Reply::Done { message }),
            Ok(((), false)) => Response::ok(Reply::Done {
                message: format!("{message}; not every worker has picked it up yet"),
            }),
            Err(InForceError::Rules(e)) => rule_error(e),
            Err(InForceError::Hook(never)) => match never {},
        }
    }

    /// Puts the daemon's first rule set in force: the same sequence as every later change,
    /// with `start` run once the table is published and before the workers are waited for
    /// (mcrd starts its data plane there; it gets the fast path's plan report first).
    /// Returns what `start` returned.
    pub fn start<T, E>(
        &mut self,
        rules: RuleSet,
        message: &str,
        start: impl FnOnce(&PlanReport) -> Result<T, E>,
    ) -> Result<T, InForceError<E>> {
        self.put_in_force(rules, message, start).map(|(t, _)| t)
    }

    /// The one sequence that puts a rule set in force: build its table (in a snapshot with
    /// the counters of its unchanged rules), plan the fast path, join the groups, publish, run
    /// `published`, wait for the workers to adopt the table, then remove what the fast path no
    /// longer needs. Returns `published`'s value and whether every worker adopted the table in time.
    fn put_in_force<T, E>(
        &mut self,
        next: RuleSet,
        message: &str,
        published: impl FnOnce(&PlanReport) -> Result<T, E>,
    ) -> Result<(T, bool), InForceError<E>> {
        let generation = self.generation + 1;
        let table =
            RuleTable::build(&next, generation, &self.resolve).map_err(InForceError::Rules)?;
        let mut snapshot = self.runtime.plane.next_snapshot(table);
        let (pending, report) = self.plan_fast_path(&mut snapshot);
        for warning in self.memberships.sync(&snapshot.table) {
            tracing::warn!("{warning}");
        }
        self.runtime.plane.publish(snapshot);
        self.generation = generation;
        self.rules = next;
        tracing::info!("{message}");
        let value = published(&report).map_err(InForceError::Hook)?;
        let adopted = self.runtime.plane.wait_adopted(generation, ADOPT_TIMEOUT);
        self.finish_fast_path(pending);
        Ok((value, adopted))
    }

    /// Follows the interfaces the rules name through link events (`crate::linkwatch`).
    ///
    /// An interface deleted and created again, under a new index or the same one, leaves
    /// dead what was bound to the old one: packet sockets, the fast path's tcx link, group
    /// memberships. Once every interface exists again, the table is re-resolved and published
    /// (the workers re-open the sockets of deleted interfaces, the fast path attaches again,
    /// the memberships are joined anew with new sockets) and `interface_changes` counted.
    /// While an input is gone, its rules are listed as `waiting` (why, in their reason) and
    /// its sockets closed; the other rules go on. Rules whose interfaces are all unchanged
    /// keep their counters.
    pub fn refresh_interfaces(&mut self, events: &crate::linkwatch::LinkEvents) {
        let snapshot = self.runtime.plane.snapshot.load_full();
        let current = &snapshot.table;
        let used: std::collections::BTreeSet<u32> = current
            .inputs
            .iter()
            .map(|i| i.ifindex)
            .chain(current.egress_keys.iter().map(|k| k.ifindex))
            .collect();
        // Deleted interfaces whose rules were removed meanwhile are no business of ours (a
        // gone input is not in a waiting table's inputs: keep them all while waiting).
        let waiting = !self.waiting_for.is_empty();
        self.deleted.retain(|i| waiting || used.contains(i));
        for &ifindex in used.iter().filter(|i| events.may_have_deleted(**i)) {
            if self.deleted.insert(ifindex) {
                self.memberships.forget_interface(ifindex);
            }
        }
        let renamed = current.rules.iter().any(|rule| {
            (self.resolve)(&rule.spec.input).ok() != Some(rule.ifindex)
                || rule.outputs.iter().any(|o| {
                    (self.resolve)(&o.interface).ok() != Some(current.egress_keys[o.egress].ifindex)
                })
        });
        if !renamed && self.deleted.is_empty() {
            return;
        }
        let mut missing: Vec<String> = current
            .rules
            .iter()
            .flat_map(|r| {
                std::iter::once(r.spec.input.as_str())
                    .chain(r.outputs.iter().map(|o| o.interface.as_str()))
            })
            .filter(|name| (self.resolve)(name).is_err())
            .map(str::to_string)
            .collect();
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            if missing != self.waiting_for {
                self.publish_waiting(&missing);
            }
            return;
        }
        let rules = self.rules.clone();
        let response = self.apply(rules, "interfaces changed: rules re-resolved".to_string());
        if response.ok {
            self.deleted.clear();
            self.waiting_for.clear();
            self.runtime.count_interface_change();
            tracing::warn!(
                "an interface a rule uses was re-created; its sockets, fast path and \
                 memberships were set up again"
            );
        } else if let Some(e) = response.error {
            tracing::error!("re-resolving interfaces: {}", e.message);
        }
    }

    /// Publishes the rules in force with the interfaces in `missing` gone: rules on a gone
    /// input wait (and its sockets close), the rest go on. A gone interface keeps its last
    /// index here, so that the table can be built.
    fn publish_waiting(&mut self, missing: &[String]) {
        let snapshot = self.runtime.plane.snapshot.load_full();
        let current = &snapshot.table;
        let last_index = |name: &str| {
            current
                .inputs
                .iter()
                .find(|i| i.name == name)
                .map(|i| i.ifindex)
                .or_else(|| {
                    current.rules.iter().find_map(|r| {
                        r.outputs
                            .iter()
                            .find(|o| o.interface == name)
                            .map(|o| current.egress_keys[o.egress].ifindex)
                    })
                })
        };
        let resolve = self.resolve;
        let resolve_or_last = |name: &str| resolve(name).or_else(|e| last_index(name).ok_or(e));
        let generation = self.generation + 1;
        let table = match RuleTable::build(&self.rules, generation, &resolve_or_last) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("interfaces {missing:?} are gone: {e}");
                return;
            }
        };
        let mut next = self.runtime.plane.next_snapshot(table);
        let (pending, _) = self.plan_fast_path(&mut next);
        let table = &mut next.table;
        let gone: Vec<u32> = table
            .inputs
            .iter()
            .filter(|i| missing.contains(&i.name))
            .map(|i| i.ifindex)
            .collect();
        table.inputs.retain(|i| !gone.contains(&i.ifindex));
        for rule in table.rules.iter_mut().filter(|r| gone.contains(&r.ifindex)) {
            rule.path = Path::Waiting {
                reason: format!(
                    "input {} was deleted; the rule waits for it to be created again",
                    rule.spec.input
                ),
            };
        }
        self.runtime.plane.publish(next);
        self.generation = generation;
        self.waiting_for = missing.to_vec();
        tracing::warn!("interfaces {missing:?} are gone; the rules on them wait for them");
        self.runtime.plane.wait_adopted(generation, ADOPT_TIMEOUT);
        self.finish_fast_path(pending);
    }

    /// Decides the path of each rule of `next`'s table and installs its kernel rules (no-op
    /// when the fast path is off); the flows that leave the kernel start their userspace
    /// stream checks afresh, before `next` is published.
    fn plan_fast_path(&self, next: &mut Snapshot) -> (Option<Pending>, PlanReport) {
        let Some(fp) = self.runtime.fast_path.as_deref() else {
            mark_fast_path_unavailable(&self.runtime, &mut next.table);
            return (None, PlanReport::default());
        };
        let (pending, report) = fp.plan(&mut next.table, self.identity.dataplane.multicast_loop);
        for &position in &report.left_kernel {
            next.counters.flow(position).restart_monitors();
        }
        (Some(pending), report)
    }

    /// Removes what the previous table had in the kernel and the new one does not; call once
    /// the workers run the new table (their filters capture the flows that left the kernel).
    fn finish_fast_path(&self, pending: Option<Pending>) {
        if let (Some(fp), Some(p)) = (self.runtime.fast_path.as_deref(), pending) {
            fp.finish(p);
        }
    }

    /// Re-plans the rules in force against the interfaces and neighbours as they are now
    /// (addresses, MACs, neighbour entries that appeared or changed), and publishes a new
    /// table if a rule changes path. mcrd calls this every second while the fast path is on;
    /// it re-plans only when [`crate::fastpath::FastPath::replan_needed`] says something the
    /// last plan asked about changed, so an idle daemon's CPU does not grow with its rules.
    ///
    /// With many rules the re-plan runs less often than asked, so that it takes at most a
    /// fixed share of a core ([`REFRESH_IDLE_RATIO`]); rule changes and interface changes
    /// are planned at once, as before.
    pub fn refresh_fast_path(&mut self) {
        let Some(fp) = self.runtime.fast_path.as_deref() else {
            return;
        };
        let started = std::time::Instant::now();
        if started < self.next_refresh {
            return;
        }
        // Nothing the plan depends on changed: re-planning would decide the same.
        if !fp.replan_needed() {
            return;
        }
        self.replan_fast_path();
        self.next_refresh = std::time::Instant::now() + started.elapsed() * REFRESH_IDLE_RATIO;
    }

    fn replan_fast_path(&mut self) {
        let generation = self.generation + 1;
        let snapshot = self.runtime.plane.snapshot.load_full();
        let current = &snapshot.table;
        let table = match RuleTable::build(&self.rules, generation, &self.resolve) {
            Ok(t) => t,
            // An interface went away: the rules stay as they are until the next change.
            Err(_) => return,
        };
        let mut next = self.runtime.plane.next_snapshot(table);
        let (pending, _) = self.plan_fast_path(&mut next);
        let table = &next.table;
        let same_paths = table.rules.len() == current.rules.len()
            && table.rules.iter().zip(&current.rules).all(|(a, b)| {
                a.spec.name == b.spec.name && a.path == b.path && a.kernel_slot == b.kernel_slot
            })
            && table.inputs.iter().zip(&current.inputs).all(|(a, b)| {
                a.kernel_flows == b.kernel_flows && a.needs_capture == b.needs_capture
            });
        if same_paths {
            self.finish_fast_path(pending);
            return;
        }
        for (new, old) in table.rules.iter().zip(&current.rules) {
            if new.path != old.path {
                tracing::info!(
                    rule = %new.spec.name,
                    "path {} -> {}{}",
                    old.path.name(),
                    new.path.name(),
                    new.path.reason().map(|r| format!(" ({r})")).unwrap_or_default()
                );
            }
        }
        self.runtime.plane.publish(next);
        self.generation = generation;
        self.runtime.plane.wait_adopted(generation, ADOPT_TIMEOUT);
        self.finish_fast_path(pending);
    }

    /// The rules in force with the path each takes: all of them, the one named `flow`, or
    /// up to `limit` in name order after the rule named `after`.
    fn listed_rules(
        &self,
        flow: Option<&str>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Vec<ListedRule> {
        let snapshot = self.runtime.plane.snapshot.load();
        let table = &snapshot.table;
        // By name in one pass: searching the table for each rule took time in N².
        let paths: std::collections::HashMap<&str, &Path> = table
            .rules
            .iter()
            .map(|r| (r.spec.name.as_str(), &r.path))
            .collect();
        let selected: Box<dyn Iterator<Item = &config::RuleSpec>> = match flow {
            Some(name) => Box::new(self.rules.get(name).into_iter()),
            None => Box::new(self.rules.after(after)),
        };
        selected
            .take(limit.map_or(usize::MAX, |n| n as usize))
            .map(|spec| {
                let path = paths
                    .get(spec.name.as_str())
                    .map(|&p| p.clone())
                    .unwrap_or_else(Path::fast_path_off);
                ListedRule {
                    rule: spec.clone(),
                    path: path.name().to_string(),
                    path_reason: path.reason().map(str::to_string),
                }
            })
            .collect()
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
}

/// The reply to a ping, which needs no state of the controller.
pub fn pong() -> Response {
    Response::ok(Reply::Pong {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// When the fast path was asked for and is unavailable, every rule says why it is in
/// userspace (instead of "fast path off").
fn mark_fast_path_unavailable(runtime: &Runtime, table: &mut RuleTable) {
    if let Some(why) = &runtime.fast_path_unavailable {
        for rule in &mut table.rules {
            rule.path = Path::Userspace {
                reason: format!("fast path unavailable: {why}"),
            };
        }
    }
}

fn rule_error(e: RuleError) -> Response {
    let kind = match e {
        RuleError::NoSuchRule(_) => ErrorKind::NotFound,
        _ => ErrorKind::Rejected,
    };
    Response::error(kind, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DataplaneConfig, RuleSpec};
    use crate::dataplane::Shared;

    /// A controller over a real (workerless) shared state; rule changes are published there.
    fn controller(config_path: Option<PathBuf>) -> Controller {
        controller_logging_to(
            config_path,
            Box::new(|l| {
                if l == "bad[" {
                    Err("bad filter".into())
                } else {
                    Ok(())
                }
            }),
        )
    }

    fn controller_logging_to(
        config_path: Option<PathBuf>,
        set_log_level: LogLevelSetter,
    ) -> Controller {
        let shared = Arc::new(Shared::new(1, false));
        // No workers: mark every generation adopted so `apply` does not wait.
        shared.adopted[0].store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
        let identity = Identity::new(
            config_path.map(|p| p.display().to_string()),
            DataplaneConfig::default(),
        )
        .unwrap();
        Controller::new(
            RuleSet::default(),
            0,
            Arc::new(Runtime::userspace(shared)),
            identity,
            set_log_level,
            Memberships::default(),
            crate::netif::index,
        )
    }

    fn rule(name: &str, port: u16) -> RuleSpec {
        RuleSpec::on_lo(name, [239, 1, 1, 1], port)
    }

    fn send(c: &mut Controller, cmd: Command) -> Response {
        c.handle(Request::new(cmd))
    }

    fn add(c: &mut Controller, rule: RuleSpec) -> Response {
        send(c, Command::RulesAdd { rule })
    }

    #[test]
    fn rules_add_list_remove_publish_tables() {
        let mut c = controller(None);
        assert!(add(&mut c, rule("a", 5000)).ok);
        assert_eq!(c.runtime.plane.snapshot.load().table.rules.len(), 1);
        // With the fast path off, the workers capture every input.
        assert!(c.runtime.plane.snapshot.load().table.inputs[0].needs_capture);
        let gen1 = c.runtime.plane.snapshot.load().table.generation;
        let Some(Reply::Rules(list)) = send(&mut c, Command::RulesList).result else {
            panic!()
        };
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].rule, rule("a", 5000));
        assert_eq!(list[0].path, "userspace");
        assert_eq!(list[0].path_reason.as_deref(), Some("fast path off"));
        assert!(send(&mut c, Command::RulesRemove { name: "a".into() }).ok);
        assert!(c.runtime.plane.snapshot.load().table.rules.is_empty());
        assert!(c.runtime.plane.snapshot.load().table.generation > gen1);
    }

    /// The counters are published beside the table: a change keeps those of the rules it
    /// leaves alone, wherever they now sit in the table, and gives a changed rule new ones.
    #[test]
    fn a_change_keeps_the_counters_of_the_rules_it_leaves_alone() {
        let mut c = controller(None);
        assert!(add(&mut c, rule("b", 5000)).ok);
        let packets = |c: &Controller, name: &str| {
            let snapshot = c.runtime.plane.snapshot.load();
            let position = snapshot
                .table
                .rules
                .iter()
                .position(|r| r.spec.name == name)
                .unwrap();
            snapshot.counters.flow(position).per_worker[0].packets.get()
        };
        let counters = &c.runtime.plane.snapshot.load_full().counters;
        assert_eq!(counters.len(), 1);
        counters.flow(0).per_worker[0].packets.add(7);
        // "a" comes first by name: "b" moves to position 1 and keeps its count.
        assert!(add(&mut c, rule("a", 5001)).ok);
        assert_eq!((packets(&c, "a"), packets(&c, "b")), (0, 7));
        assert!(send(&mut c, Command::RulesRemove { name: "b".into() }).ok);
        assert!(add(&mut c, rule("b", 5002)).ok);
        assert_eq!(packets(&c, "b"), 0, "a changed rule starts at zero");
    }

    #[test]
    fn refused_changes_leave_the_published_table_alone() {
        let mut c = controller(None);
        assert!(add(&mut c, rule("a", 5000)).ok);
        let before = c.runtime.plane.snapshot.load().table.generation;
        let r = add(&mut c, rule("a", 5001));
        assert_eq!(r.error.unwrap().kind, ErrorKind::Rejected);
        let mut bad_if = rule("b", 5002);
        bad_if.outputs[0].interface = "nonexistent0".into();
        let r = add(&mut c, bad_if);
        let e = r.error.unwrap();
        assert_eq!(e.kind, ErrorKind::Rejected);
        assert!(e.message.contains("nonexistent0"), "{}", e.message);
        let r = send(&mut c, Command::RulesRemove { name: "zzz".into() });
        assert_eq!(r.error.unwrap().kind, ErrorKind::NotFound);
        assert_eq!(c.runtime.plane.snapshot.load().table.generation, before);
        assert_eq!(c.rules().len(), 1);
    }

    #[test]
    fn malformed_lines_get_error_replies() {
        let mut c = controller(None);
        let r =
            c.handle_line(b"{\"version\":1,\"request\":{\"rules_add\":{\"rule\":{\"name\":1}}}}");
        assert_eq!(r.error.unwrap().kind, ErrorKind::BadRequest);
        let r = c.handle_line(b"\0\0\0");
        assert!(!r.ok);
    }

    #[test]
    fn stats_and_ping_and_log_level() {
        let mut c = controller(None);
        let Some(Reply::Stats(s)) = send(&mut c, Command::Stats).result else {
            panic!()
        };
        assert_eq!(s.schema, crate::stats::report::STATS_SCHEMA);
        assert!(matches!(
            send(&mut c, Command::Ping).result,
            Some(Reply::Pong { .. })
        ));
        assert!(
            send(
                &mut c,
                Command::LogLevel {
                    level: "debug".into()
                }
            )
            .ok
        );
        assert_eq!(
            send(
                &mut c,
                Command::LogLevel {
                    level: "bad[".into()
                }
            )
            .error
            .unwrap()
            .kind,
            ErrorKind::Rejected
        );
    }

    #[test]
    fn reload_applies_a_good_file_and_refuses_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        let rule_text = |port: u16| {
            format!("[[rule]]\nname = \"r{port}\"\ninput = \"lo\"\ngroup = \"239.1.1.1\"\nport = {port}\noutputs = [{{ dest = \"239.2.2.2\", port = 6000, interface = \"lo\" }}]\n")
        };
        std::fs::write(&path, rule_text(5000)).unwrap();
        let mut c = controller(Some(path.clone()));
        assert!(send(&mut c, Command::ConfigReload).ok);
        assert_eq!(c.rules().iter().next().unwrap().name, "r5000");
        std::fs::write(&path, rule_text(5001) + "bogus = 1\n").unwrap();
        let r = send(&mut c, Command::ConfigReload);
        let e = r.error.unwrap();
        assert!(
            e.message.contains("old rules stay") && e.message.contains("bogus"),
            "{}",
            e.message
        );
        assert_eq!(c.rules().iter().next().unwrap().name, "r5000");
        assert_eq!(
            c.runtime.plane.snapshot.load().table.rules[0].spec.name,
            "r5000"
        );
    }

    #[test]
    fn reload_to_no_rules_needs_allow_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "[[rule]]\nname = \"r\"\ninput = \"lo\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [{ dest = \"239.2.2.2\", port = 6000, interface = \"lo\" }]\n").unwrap();
        let mut c = controller(Some(path.clone()));
        assert!(send(&mut c, Command::ConfigReload).ok);
        let gen = c.runtime.plane.snapshot.load().table.generation;
        for empty in ["", "log_level = \"info\"\n", "allow_empty = false\n"] {
            std::fs::write(&path, empty).unwrap();
            let e = send(&mut c, Command::ConfigReload).error.unwrap();
            assert!(e.message.contains("allow_empty = true"), "{}", e.message);
            assert_eq!(c.rules().len(), 1);
            assert_eq!(c.runtime.plane.snapshot.load().table.generation, gen);
        }
        std::fs::write(&path, "allow_empty = true\n").unwrap();
        assert!(send(&mut c, Command::ConfigReload).ok);
        assert!(c.rules().is_empty());
        // From an empty table, an empty file is no change and needs nothing.
        std::fs::write(&path, "").unwrap();
        assert!(send(&mut c, Command::ConfigReload).ok);
    }

    #[test]
    fn reload_without_a_file_is_refused() {
        let mut c = controller(None);
        assert_eq!(
            send(&mut c, Command::ConfigReload).error.unwrap().kind,
            ErrorKind::Rejected
        );
    }

    #[test]
    fn a_reload_sets_a_changed_log_level_and_leaves_a_runtime_one_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        let file = |head: &str| {
            format!("{head}[[rule]]\nname = \"r\"\ninput = \"lo\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [{{ dest = \"239.2.2.2\", port = 6000, interface = \"lo\" }}]\n")
        };
        std::fs::write(&path, file("")).unwrap();
        let set: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let seen = Arc::clone(&set);
        let mut c = controller_logging_to(
            Some(path.clone()),
            Box::new(move |l| {
                seen.lock().unwrap().push(l.to_string());
                Ok(())
            }),
        );
        c.started_with(FileSettings::of(&config::parse_file(&path).unwrap()));
        let levels = || set.lock().unwrap().clone();
        assert!(send(&mut c, Command::ConfigReload).ok);
        assert!(levels().is_empty(), "unchanged file: {:?}", levels());
        let debug = Command::LogLevel {
            level: "debug".into(),
        };
        assert!(send(&mut c, debug).ok);
        assert!(send(&mut c, Command::ConfigReload).ok);
        assert_eq!(
            levels(),
            ["debug"],
            "a reload that does not touch log_level keeps it"
        );
        std::fs::write(&path, file("log_level = \"warn\"\n")).unwrap();
        assert!(send(&mut c, Command::ConfigReload).ok);
        assert_eq!(levels(), ["debug", "warn"]);
        // A refused reload changes nothing, the level included.
        std::fs::write(&path, file("log_level = \"trace\"\nbogus = 1\n")).unwrap();
        assert!(!send(&mut c, Command::ConfigReload).ok);
        assert_eq!(levels(), ["debug", "warn"]);
    }

    #[test]
    fn settings_only_a_restart_applies_are_named() {
        let mut c = controller(None);
        let start = config::parse("", "r.toml").unwrap();
        c.started_with(FileSettings::of(&start));
        assert!(c
            .restart_needed(&FileSettings::of(&start), false)
            .is_empty());
        let next = config::parse(
            "log_format = \"json\"\n[metrics]\nlisten = \"127.0.0.1:9\"\n[control]\nmode = \"0600\"\n",
            "r.toml",
        )
        .unwrap();
        assert_eq!(
            c.restart_needed(&FileSettings::of(&next), true),
            ["[dataplane]", "[control]", "[metrics]", "log_format"]
        );
    }
}
