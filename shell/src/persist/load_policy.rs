//! Which copy of a player a join loads: the pure rule behind the loader, kept apart from the
//! I/O so it can be tested case by case.
//!
//! The copies: the spool's newest unacknowledged save (`local`: made by any zone of this
//! process, not yet in the cold store), the hot copy (written at leave and crossing) and the
//! cold store's record. The rule:
//! - if the cold store or the hot store cannot answer, the join is **refused**: either may
//!   hold a newer state than the others, and a guess could roll the player back;
//! - otherwise the newest version wins (ties go to the cold record, then the local copy:
//!   they are the same state, and the cold record carries the profile);
//! - a new character only when no copy exists at all.

use zone_core::PlayerState;

use super::cold::{StoreError, StoredPlayer};

/// Where a loaded state came from (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LoadSource {
    /// The spool of this process.
    Local,
    /// The hot store.
    Hot,
    /// The cold store.
    Cold,
}

impl LoadSource {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            LoadSource::Local => "local",
            LoadSource::Hot => "hot",
            LoadSource::Cold => "cold",
        }
    }
}

/// What the policy chose.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    /// Load this state.
    Found {
        /// The state and the cold store's profile, if any.
        stored: StoredPlayer,
        /// Which copy.
        source: LoadSource,
    },
    /// Nobody knows the player: a new character.
    New,
    /// The join must be refused: why.
    Refuse(String),
}

/// Chooses the copy a join loads (see the module doc).
pub fn choose(
    local: Option<PlayerState>,
    hot: Result<Option<PlayerState>, StoreError>,
    cold: Result<Option<StoredPlayer>, StoreError>,
) -> Choice {
    let cold = match cold {
        Ok(c) => c,
        Err(e) => return Choice::Refuse(format!("cold store: {e}")),
    };
    let hot = match hot {
        Ok(h) => h,
        Err(e) => return Choice::Refuse(format!("hot store: {e}")),
    };
    let profile = cold.as_ref().and_then(|c| c.profile.clone());
    // In order of preference on equal versions.
    let candidates = [
        cold.map(|c| (c.state, LoadSource::Cold)),
        local.map(|s| (s, LoadSource::Local)),
        hot.map(|s| (s, LoadSource::Hot)),
    ];
    let mut best: Option<(PlayerState, LoadSource)> = None;
    for (state, source) in candidates.into_iter().flatten() {
        if best.is_none_or(|(b, _)| state.version > b.version) {
            best = Some((state, source));
        }
    }
    match best {
        Some((state, source)) => Choice::Found {
            stored: StoredPlayer { state, profile },
            source,
        },
        None => Choice::New,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::ProfileRecord;
    use zone_core::PlayerId;

    fn state(epoch: u64, counter: u32) -> PlayerState {
        PlayerState {
            version: zone_core::Version::new(epoch, counter),
            ..PlayerState::new_character(0.0, 0.0, 100)
        }
    }

    fn cold(epoch: u64, counter: u32) -> Result<Option<StoredPlayer>, StoreError> {
        Ok(Some(StoredPlayer {
            state: state(epoch, counter),
            profile: Some(ProfileRecord {
                player: PlayerId(1),
                name: "p".into(),
                created_unix_ms: 1,
            }),
        }))
    }

    fn found(c: &Choice) -> (u64, LoadSource, bool) {
        match c {
            Choice::Found { stored, source } => (
                stored.state.version.raw(),
                *source,
                stored.profile.is_some(),
            ),
            other => panic!("not found: {other:?}"),
        }
    }

    #[test]
    fn the_newest_copy_wins_and_keeps_the_cold_profile() {
        let c = choose(Some(state(2, 13)), Ok(Some(state(2, 1))), cold(1, 40));
        assert_eq!(found(&c), ((2 << 32) | 13, LoadSource::Local, true));
        let c = choose(Some(state(2, 13)), Ok(Some(state(3, 1))), cold(1, 40));
        assert_eq!(found(&c), ((3 << 32) | 1, LoadSource::Hot, true));
        let c = choose(Some(state(2, 13)), Ok(None), cold(2, 14));
        assert_eq!(found(&c), ((2 << 32) | 14, LoadSource::Cold, true));
    }

    #[test]
    fn equal_versions_prefer_the_cold_record_then_the_local_copy() {
        let c = choose(Some(state(2, 5)), Ok(Some(state(2, 5))), cold(2, 5));
        assert_eq!(found(&c).1, LoadSource::Cold);
        let c = choose(Some(state(2, 5)), Ok(Some(state(2, 5))), Ok(None));
        assert_eq!(found(&c).1, LoadSource::Local);
    }

    #[test]
    fn a_spooled_save_the_cold_store_lacks_is_not_a_new_character() {
        let c = choose(Some(state(1, 3)), Ok(None), Ok(None));
        assert_eq!(found(&c), ((1 << 32) | 3, LoadSource::Local, false));
        assert_eq!(choose(None, Ok(None), Ok(None)), Choice::New);
    }

    #[test]
    fn a_store_that_cannot_answer_refuses_the_join_even_with_a_local_copy() {
        let down = || StoreError::Unavailable("down".into());
        assert!(matches!(
            choose(Some(state(9, 9)), Ok(None), Err(down())),
            Choice::Refuse(_)
        ));
        assert!(matches!(
            choose(Some(state(9, 9)), Err(down()), cold(1, 1)),
            Choice::Refuse(_)
        ));
    }
}
