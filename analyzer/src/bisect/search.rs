//! A whole bisection over an ordered list of commits, driven by [`super::step`].
//!
//! The caller supplies the records: `records(set, commit, n)` returns at least `n` runs of
//! `commit` made in the set of runs `set` (it may cache and add to earlier runs of the same set;
//! the search asks for more only when a step was undecided). Every candidate is judged against
//! the two original endpoints, run again in each step's own set beside the candidate: runs of
//! the endpoints kept from an earlier step would read any drift of the machine as a
//! difference (`reports/bisect-proof.md`). The search stops with "could not decide" rather than
//! guess when a step stays undecided at the repeat bound.
//!
//! Adding repeats and testing again is looking at the data more than once, and every look is
//! another chance for noise to pass the test; so every look is tested at `alpha / looks`
//! (Bonferroni over the looks a step may take), which keeps each decision's chance of being
//! noise at most `alpha`. Without it, a synthetic history with noise four times the change
//! named a wrong commit in 1 of 20 seeds.

use crate::compare::Settings;
use crate::error::{Error, Result};
use crate::record::RunRecord;

use super::step::{self, Answer, Reason, Side, Step};

/// Bounds of a bisection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Repeats of every side in a step's first try.
    pub repeats: usize,
    /// Repeats added to every side after an undecided step.
    pub add: usize,
    /// No side gets more than this many repeats; an undecided step at the bound ends the search.
    pub max_repeats: usize,
}

impl Plan {
    /// The most times one step (or the final check) tests its samples: the first try and one
    /// per addition up to the bound.
    pub fn looks(&self) -> usize {
        1 + (self.max_repeats - self.repeats).div_ceil(self.add)
    }
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            repeats: 5,
            add: 3,
            max_repeats: 14,
        }
    }
}

/// The set of runs a step judges: runs are made, kept and compared per set, so that a step
/// compares only runs made side by side (as `scripts/perf-bisect.sh` keeps `runs/SET/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunSet<'a> {
    /// The step on this candidate: the candidate and both endpoints.
    Step(&'a str),
    /// The last look: the first bad commit and its parent.
    Parent,
}

/// One judged candidate, for the log of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Tried {
    pub commit: String,
    pub step: Step,
}

/// How a bisection ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `commit` is the first bad one: its parent `parent` is good (or the good endpoint).
    FirstBad {
        commit: String,
        parent: String,
        /// The commit judged against its parent on the same metric.
        against_parent: Side,
    },
    /// The search stopped between `good` and `bad` (adjacent or not) without guessing.
    CouldNotDecide {
        good: String,
        bad: String,
        why: Stop,
    },
}

/// Why a search stopped without naming a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// The step on `commit` stayed undecided with `repeats` runs of each side, the bound.
    Undecided {
        commit: String,
        repeats: usize,
        reason: Reason,
    },
    /// The steps point at the bad commit, but with `repeats` runs of each it does not differ
    /// from its parent (the good one) beyond noise.
    NoDifferenceFromParent { repeats: usize },
}

/// The result of [`bisect`].
#[derive(Debug, Clone, PartialEq)]
pub struct Bisection {
    pub outcome: Outcome,
    /// Every candidate judged, in order.
    pub tried: Vec<Tried>,
    /// The metric key judged.
    pub metric: String,
}

/// Bisects `commits` (oldest first; the first is known good, the last known bad) on `metric`
/// (`None`: the one whose change made the bad endpoint bad, fixed at the first step).
pub fn bisect<F>(
    commits: &[String],
    metric: Option<&str>,
    settings: &Settings,
    plan: &Plan,
    mut records: F,
) -> Result<Bisection>
where
    F: FnMut(RunSet<'_>, &str, usize) -> Result<Vec<RunRecord>>,
{
    if commits.len() < 2 {
        return Err(Error::Usage(
            "bisect needs at least two commits: the good one and the bad one".into(),
        ));
    }
    if plan.repeats < 1 || plan.add < 1 || plan.max_repeats < plan.repeats {
        return Err(Error::Usage(format!(
            "bisect plan {plan:?}: repeats and add must be >= 1 and max_repeats >= repeats"
        )));
    }
    let settings = &Settings {
        alpha: settings.alpha / plan.looks() as f64,
        ..*settings
    };
    let (good, bad) = (&commits[0], &commits[commits.len() - 1]);
    let mut metric = metric.map(str::to_string);
    let (mut lo, mut hi) = (0, commits.len() - 1);
    let mut tried = Vec::new();
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let mut n = plan.repeats;
        let step = loop {
            let set = RunSet::Step(&commits[mid]);
            let g = records(set, good, n)?;
            let b = records(set, bad, n)?;
            let c = records(set, &commits[mid], n)?;
            let s = step::step(&g, &b, &c, metric.as_deref(), settings)?;
            metric.get_or_insert_with(|| s.metric.key.clone());
            if s.answer != Answer::Undecided || n >= plan.max_repeats {
                break s;
            }
            n = (n + plan.add).min(plan.max_repeats);
        };
        let answer = step.answer;
        let reason = step.reason;
        tried.push(Tried {
            commit: commits[mid].clone(),
            step,
        });
        match answer {
            Answer::Good => lo = mid,
            Answer::Bad => hi = mid,
            Answer::Undecided => {
                return Ok(Bisection {
                    outcome: Outcome::CouldNotDecide {
                        good: commits[lo].clone(),
                        bad: commits[hi].clone(),
                        why: Stop::Undecided {
                            commit: commits[mid].clone(),
                            repeats: n,
                            reason,
                        },
                    },
                    tried,
                    metric: metric.unwrap_or_default(),
                })
            }
        }
    }
    // The steps say the parent is good and the commit bad, each against the endpoints. A
    // step's "good" rests on the candidate not differing from good, which noise can fake; the
    // answer is given only when the commit also differs from its own parent, in the direction
    // of the change being bisected, with repeats added up to the bound.
    let direction = tried.first().map(|t| t.step.endpoints.sign());
    let mut n = tried
        .iter()
        .map(|t| t.step.against_good.n_other)
        .max()
        .unwrap_or(plan.repeats);
    let parent = loop {
        let p = records(RunSet::Parent, &commits[lo], n)?;
        let c = records(RunSet::Parent, &commits[hi], n)?;
        let s = step::step(&p, &c, &c, metric.as_deref(), settings)?;
        let e = s.endpoints;
        if e.differs() && direction.is_none_or(|d| d == e.sign()) {
            break s;
        }
        if n >= plan.max_repeats {
            return Ok(Bisection {
                outcome: Outcome::CouldNotDecide {
                    good: commits[lo].clone(),
                    bad: commits[hi].clone(),
                    why: Stop::NoDifferenceFromParent { repeats: n },
                },
                tried,
                metric: s.metric.key,
            });
        }
        n = (n + plan.add).min(plan.max_repeats);
    };
    Ok(Bisection {
        outcome: Outcome::FirstBad {
            commit: commits[hi].clone(),
            parent: commits[lo].clone(),
            against_parent: parent.endpoints,
        },
        tried,
        metric: parent.metric.key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Hop, HopCounters};

    /// A deterministic noise source (64-bit LCG): the tests must not flake.
    struct Noise(u64);

    impl Noise {
        /// Uniform in [-1, 1).
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    /// One run of a relay that forwards `pps` packets in one second.
    fn run(name: &str, pps: f64) -> RunRecord {
        let mut r = RunRecord::new(name);
        r.duration_ns = Some(1_000_000_000);
        r.hops.push(Hop {
            name: "MCR-1".into(),
            counters: HopCounters {
                rx: Some(1_000_000),
                tx_sent: Some(pps as u64),
                ..Default::default()
            },
            ..Default::default()
        });
        r
    }

    /// A history of 16 commits where `culprit` drops the rate from 900k to 800k pps, with
    /// runs spread ±`spread` percent; records are made on demand and kept, as a script would.
    struct History {
        commits: Vec<String>,
        culprit: usize,
        spread: f64,
        noise: Noise,
        runs: std::collections::HashMap<(String, String), Vec<RunRecord>>,
        asked: usize,
        /// Every run is this many percent slower than the one before it: a machine that
        /// drifts during the bisection.
        drift_pct_per_run: f64,
        /// Keep one set of runs per commit for the whole search, as the script once did.
        one_set: bool,
    }

    impl History {
        fn new(culprit: usize, spread: f64, seed: u64) -> Self {
            History {
                commits: (0..16).map(|i| format!("c{i:02}")).collect(),
                culprit,
                spread,
                noise: Noise(seed),
                runs: Default::default(),
                asked: 0,
                drift_pct_per_run: 0.0,
                one_set: false,
            }
        }

        fn records(&mut self, set: RunSet<'_>, commit: &str, n: usize) -> Result<Vec<RunRecord>> {
            let i = self.commits.iter().position(|c| c == commit).unwrap();
            let center = if i >= self.culprit {
                800_000.0
            } else {
                900_000.0
            };
            let set = if self.one_set {
                String::new()
            } else {
                format!("{set:?}")
            };
            let have = self.runs.entry((set, commit.to_string())).or_default();
            while have.len() < n {
                let drift = 1.0 - self.drift_pct_per_run / 100.0 * self.asked as f64;
                let x = drift * center * (1.0 + self.spread / 100.0 * self.noise.next());
                have.push(run(commit, x));
                self.asked += 1;
            }
            Ok(have.clone())
        }

        /// The whole search over this history, with the default settings and plan.
        fn bisect(&mut self, metric: Option<&str>) -> Bisection {
            let commits = self.commits.clone();
            bisect(
                &commits,
                metric,
                &Settings::default(),
                &Plan::default(),
                |set, c, n| self.records(set, c, n),
            )
            .unwrap()
        }
    }

    #[test]
    fn names_the_planted_commit_in_a_noisy_history_of_16() {
        for culprit in 1..16 {
            let mut h = History::new(culprit, 3.0, 42);
            let b = h.bisect(None);
            assert_eq!(b.metric, "hop1.tx_pps");
            match b.outcome {
                Outcome::FirstBad {
                    commit,
                    parent,
                    against_parent,
                } => {
                    assert_eq!(commit, h.commits[culprit], "culprit {culprit}");
                    assert_eq!(parent, h.commits[culprit - 1]);
                    let c = against_parent.judgement.change.unwrap();
                    assert!((-14.0..-8.0).contains(&c), "effect {c}");
                }
                other => panic!("culprit {culprit}: {other:?}"),
            }
            assert!(b.tried.len() <= 4, "log2(16) steps, not {}", b.tried.len());
        }
    }

    #[test]
    fn noise_larger_than_the_change_ends_in_could_not_decide_never_a_wrong_commit() {
        // ±40% spread around an 11% drop: the test cannot separate the commits within the
        // repeat bound.
        let mut undecided = 0;
        for seed in 0..20 {
            let mut h = History::new(9, 40.0, seed);
            let r = h.bisect(Some("hop1.tx_pps"));
            match &r.outcome {
                Outcome::CouldNotDecide { why, .. } => {
                    assert!(
                        matches!(
                            why,
                            Stop::Undecided { repeats: 14, .. }
                                | Stop::NoDifferenceFromParent { repeats: 14 }
                        ),
                        "{why:?}"
                    );
                    undecided += 1;
                }
                // Noise may, rarely, still point at the right commit; never at a wrong one.
                Outcome::FirstBad { commit, .. } => assert_eq!(commit, "c09", "seed {seed}"),
            }
            assert!(h.asked <= 16 * 14, "bounded: {} runs", h.asked);
        }
        assert!(
            undecided >= 15,
            "only {undecided} of 20 said could not decide"
        );
    }

    /// The machine slows by 0.4% a run, tens of percent over a search. With the endpoints'
    /// runs kept from the first step (one set), later good candidates read slower than good,
    /// and some searches stop undecided or blame a wrong commit; with each step's own set of
    /// runs every search names the culprit.
    #[test]
    fn a_machine_drifting_during_the_search_is_not_read_as_a_difference() {
        let search = |one_set: bool, culprit: usize| {
            let mut h = History::new(culprit, 1.0, 7);
            h.drift_pct_per_run = 0.4;
            h.one_set = one_set;
            let b = h.bisect(Some("hop1.tx_pps"));
            matches!(b.outcome, Outcome::FirstBad { commit, .. } if commit == h.commits[culprit])
        };
        let culprits = [9, 11, 13, 15];
        for culprit in culprits {
            assert!(
                search(false, culprit),
                "per-step sets, culprit c{culprit:02}"
            );
        }
        let one_set_right = culprits.iter().filter(|&&c| search(true, c)).count();
        assert!(
            one_set_right < culprits.len(),
            "one set for the whole search named every culprit: the drift did not show"
        );
    }

    #[test]
    fn fewer_than_two_commits_is_a_usage_error() {
        let e = bisect(
            &["a".to_string()],
            None,
            &Settings::default(),
            &Plan::default(),
            |_, _, _| Ok(vec![]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least two commits"), "{e}");
    }
}
