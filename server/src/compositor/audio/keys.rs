//! The appliance keyboard's volume keys change the session's default sink (and MicMute its
//! default source) through `wpctl`, as the session's own panel or a user's `pactl` would: the
//! change is PipeWire's, so the panel shows it and WirePlumber keeps it. The compositor draws
//! nothing for them and passes them on to no client.

use smithay::input::keyboard::Keysym;

/// What a volume key does, as `wpctl` arguments.
pub fn wpctl_args(sym: Keysym) -> Option<&'static [&'static str]> {
    Some(match sym {
        // Up to 100 %: a key repeat must not drive it into clipping.
        Keysym::XF86_AudioRaiseVolume => {
            &["set-volume", "-l", "1.0", "@DEFAULT_AUDIO_SINK@", "5%+"]
        }
        Keysym::XF86_AudioLowerVolume => &["set-volume", "@DEFAULT_AUDIO_SINK@", "5%-"],
        Keysym::XF86_AudioMute => &["set-mute", "@DEFAULT_AUDIO_SINK@", "toggle"],
        Keysym::XF86_AudioMicMute => &["set-mute", "@DEFAULT_AUDIO_SOURCE@", "toggle"],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_keys_map_to_the_default_sink_and_source() {
        assert!(wpctl_args(Keysym::XF86_AudioRaiseVolume)
            .unwrap()
            .contains(&"@DEFAULT_AUDIO_SINK@"));
        assert_eq!(
            wpctl_args(Keysym::XF86_AudioMicMute).unwrap(),
            ["set-mute", "@DEFAULT_AUDIO_SOURCE@", "toggle"]
        );
        assert_eq!(wpctl_args(Keysym::a), None);
    }
}
