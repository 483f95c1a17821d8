//! The game the server's zones run: the built-in game plus the plugins `zone.plugins` names,
//! from the plugins this binary is built with.

use zone_core::game::{Game, GameError, WireLayout};

/// Plugins this binary can run, by name.
pub const KNOWN_PLUGINS: [&str; 1] = [zone_capture::NAME];

/// Why `zone.plugins` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PluginsError {
    /// A name this binary has no plugin for.
    #[error("unknown plugin {0:?} (this server knows {KNOWN_PLUGINS:?})")]
    Unknown(String),
    /// The plugins do not fit together.
    #[error(transparent)]
    Game(#[from] GameError),
}

/// The built-in game followed by the named plugins, in order.
pub fn game_of(plugins: &[String]) -> Result<Game, PluginsError> {
    let mut game = Game::default();
    for name in plugins {
        game = match name.as_str() {
            zone_capture::NAME => game.with(zone_capture::CapturePoints::demo()),
            other => return Err(PluginsError::Unknown(other.to_owned())),
        };
    }
    // Clashing declarations are refused here, not when the first zone is built.
    game.wire()?;
    Ok(game)
}

/// The wire layout of the game `plugins` names (what bots and clients need).
pub fn wire_of(plugins: &[String]) -> Result<WireLayout, PluginsError> {
    Ok(game_of(plugins)?.wire()?)
}

/// The wire layout of the default configuration's game (the demo world's): for bots and
/// clients of a server that runs on its defaults.
pub fn demo_wire() -> WireLayout {
    wire_of(&crate::config::ZoneSection::default().plugins).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_build_and_unknown_ones_are_refused() {
        let game = game_of(&[zone_capture::NAME.to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            game.plugin_names().collect::<Vec<_>>(),
            ["zone.builtin", zone_capture::NAME]
        );
        assert!(game_of(&[]).is_ok_and(|g| g.plugin_names().count() == 1));
        assert_eq!(
            game_of(&["nope".to_owned()]).err(),
            Some(PluginsError::Unknown("nope".to_owned()))
        );
        assert!(matches!(
            game_of(&[zone_capture::NAME.to_owned(), zone_capture::NAME.to_owned()]),
            Err(PluginsError::Game(GameError::ActionKindClash(..)))
        ));
    }
}
