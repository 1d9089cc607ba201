//! Poisoning attacks for robustness experiments: which share of simulated clients misbehave, and
//! how.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::{Distribution, Normal};

/// How a simulated client behaves: honestly, or as one of the poisoning attacks used to test
/// robust strategies. Attacks live in the simulation, around the participant: a deployable
/// `Participant` has no attack code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// Trains on flipped labels (the driver flips them in this node's data).
    LabelFlip,
    /// Sends Gaussian noise of this standard deviation instead of an update.
    Noise {
        /// Per-coordinate standard deviation.
        std: f32,
    },
    /// Multiplies its honest update by this factor (boosting / model replacement).
    Scale {
        /// Factor applied to the update.
        factor: f32,
    },
    /// Does not train: sends zeros (`std` 0) or Gaussian noise of `std`, claiming its rows.
    FreeRider {
        /// Per-coordinate standard deviation of what it sends (0: zeros).
        std: f32,
    },
    /// Holds a copy of another client's rows and trains on them honestly.
    Duplicate {
        /// The client whose rows it copied.
        of: usize,
    },
    /// Trains honestly on rows of which a share carry uniformly random labels.
    NoisyLabels {
        /// Share of its rows relabelled.
        share: f32,
    },
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Behaviour::Honest => f.write_str("honest"),
            Behaviour::LabelFlip => f.write_str("label-flip"),
            Behaviour::Noise { std } => write!(f, "noise (std {std})"),
            Behaviour::Scale { factor } => write!(f, "scale (×{factor})"),
            Behaviour::FreeRider { std } if std > 0.0 => write!(f, "free-rider (noise, std {std})"),
            Behaviour::FreeRider { .. } => f.write_str("free-rider (zeros)"),
            Behaviour::Duplicate { of } => write!(f, "duplicate of client {of}"),
            Behaviour::NoisyLabels { share } => {
                write!(f, "noisy-labels ({:.0}% relabelled)", share * 100.0)
            }
        }
    }
}

impl Behaviour {
    /// What a client with this behaviour sends instead of its honest update `delta` (label
    /// flipping happens in the client's data, before training).
    pub fn apply(&self, delta: &mut [f32], rng: &mut impl Rng) {
        match *self {
            Behaviour::Honest
            | Behaviour::LabelFlip
            | Behaviour::Duplicate { .. }
            | Behaviour::NoisyLabels { .. } => {}
            Behaviour::Scale { factor } => delta.iter_mut().for_each(|d| *d *= factor),
            Behaviour::Noise { std } | Behaviour::FreeRider { std } if std > 0.0 => {
                if let Ok(normal) = Normal::new(0.0f32, std) {
                    delta.iter_mut().for_each(|d| *d = normal.sample(rng));
                }
            }
            Behaviour::Noise { .. } | Behaviour::FreeRider { .. } => delta.fill(0.0),
        }
    }
}

/// An attack run by a fraction of simulated clients, as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attack {
    /// `label-flip:F`: a fraction F of clients train on labels mapped c → (classes − 1 − c).
    LabelFlip {
        /// Share of clients attacking.
        fraction: f64,
    },
    /// `noise:F[,STD]`: a fraction F send Gaussian noise (default std 1) instead of updates.
    Noise {
        /// Share of clients attacking.
        fraction: f64,
        /// Per-coordinate standard deviation.
        std: f32,
    },
    /// `scale:F,X`: a fraction F multiply their honest update by X (boosting).
    Scale {
        /// Share of clients attacking.
        fraction: f64,
        /// Factor.
        factor: f32,
    },
    /// `free-rider:F[,STD]`: a fraction F do not train and send zeros (or noise of STD).
    FreeRider {
        /// Share of clients free-riding.
        fraction: f64,
        /// Standard deviation of what they send (0: zeros).
        std: f32,
    },
    /// `duplicate:F`: a fraction F hold a copy of another (honest) client's rows.
    Duplicate {
        /// Share of clients holding copies.
        fraction: f64,
    },
    /// `noisy-labels:F,P`: a fraction F have a share P of their labels drawn at random.
    NoisyLabels {
        /// Share of clients with noisy labels.
        fraction: f64,
        /// Share of each such client's rows relabelled.
        share: f32,
    },
}

impl Attack {
    /// Share of clients attacking.
    pub fn fraction(&self) -> f64 {
        match *self {
            Attack::LabelFlip { fraction }
            | Attack::Noise { fraction, .. }
            | Attack::Scale { fraction, .. }
            | Attack::FreeRider { fraction, .. }
            | Attack::Duplicate { fraction }
            | Attack::NoisyLabels { fraction, .. } => fraction,
        }
    }
}

/// A malformed `--attack` value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "invalid attack \"{input}\": {problem}; expected label-flip:F, noise:F[,STD], scale:F,X, free-rider:F[,STD], duplicate:F or noisy-labels:F,P with F and P in [0, 1]"
)]
pub struct AttackParseError {
    input: String,
    problem: String,
}

impl FromStr for Attack {
    type Err = AttackParseError;

    fn from_str(s: &str) -> Result<Attack, AttackParseError> {
        let err = |problem: &str| AttackParseError {
            input: s.to_string(),
            problem: problem.to_string(),
        };
        let (kind, args) = s.split_once(':').ok_or_else(|| err("missing ':'"))?;
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        let fraction: f64 = args[0]
            .parse()
            .map_err(|_| err(&format!("fraction \"{}\" is not a number", args[0])))?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(err(&format!("fraction {fraction} is outside [0, 1]")));
        }
        let number = |idx: usize, what: &str| -> Result<Option<f32>, AttackParseError> {
            match args.get(idx) {
                None => Ok(None),
                Some(v) => v
                    .parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(Some)
                    .ok_or_else(|| err(&format!("{what} \"{v}\" is not a finite number"))),
            }
        };
        let attack = match kind.trim() {
            "label-flip" if args.len() == 1 => Attack::LabelFlip { fraction },
            "noise" if args.len() <= 2 => {
                let std = number(1, "std")?.unwrap_or(1.0);
                if std <= 0.0 {
                    return Err(err("std must be positive"));
                }
                Attack::Noise { fraction, std }
            }
            "scale" if args.len() == 2 => Attack::Scale {
                fraction,
                factor: number(1, "factor")?.unwrap_or(1.0),
            },
            "free-rider" if args.len() <= 2 => {
                let std = number(1, "std")?.unwrap_or(0.0);
                if std < 0.0 {
                    return Err(err("std must not be negative"));
                }
                Attack::FreeRider { fraction, std }
            }
            "duplicate" if args.len() == 1 => Attack::Duplicate { fraction },
            "noisy-labels" if args.len() == 2 => {
                let share = number(1, "share")?.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&share) {
                    return Err(err(&format!("share {share} is outside [0, 1]")));
                }
                Attack::NoisyLabels { fraction, share }
            }
            "label-flip" | "noise" | "scale" | "free-rider" | "duplicate" | "noisy-labels" => {
                return Err(err("wrong number of parameters"));
            }
            other => return Err(err(&format!("unknown attack \"{other}\""))),
        };
        Ok(attack)
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attack::LabelFlip { fraction } => write!(f, "label-flip:{fraction}"),
            Attack::Noise { fraction, std } => write!(f, "noise:{fraction},{std}"),
            Attack::Scale { fraction, factor } => write!(f, "scale:{fraction},{factor}"),
            Attack::FreeRider { fraction, std } => write!(f, "free-rider:{fraction},{std}"),
            Attack::Duplicate { fraction } => write!(f, "duplicate:{fraction}"),
            Attack::NoisyLabels { fraction, share } => {
                write!(f, "noisy-labels:{fraction},{share}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    fn check(input: &str, expected: Result<Attack, &str>) {
        match (input.parse::<Attack>(), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
            (Err(got), Err(fragment)) => assert!(
                got.to_string().contains(fragment),
                "{input}: error {got} lacks {fragment:?}"
            ),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_attacks_and_names_problems() {
        check("label-flip:0.2", Ok(Attack::LabelFlip { fraction: 0.2 }));
        check(
            "noise:0.1",
            Ok(Attack::Noise {
                fraction: 0.1,
                std: 1.0,
            }),
        );
        check(
            "noise:0.1,3",
            Ok(Attack::Noise {
                fraction: 0.1,
                std: 3.0,
            }),
        );
        check(
            "scale:0.2,-10",
            Ok(Attack::Scale {
                fraction: 0.2,
                factor: -10.0,
            }),
        );
        check("scale:0.2", Err("wrong number of parameters"));
        check("scale:1.5,2", Err("outside [0, 1]"));
        check("flip:0.2", Err("unknown attack \"flip\""));
        check("noise", Err("missing ':'"));
        check("noise:abc", Err("\"abc\" is not a number"));
        check("scale:0.2,inf", Err("not a finite number"));
    }

    #[test]
    fn parses_the_valuation_attacks() {
        check(
            "free-rider:0.1",
            Ok(Attack::FreeRider {
                fraction: 0.1,
                std: 0.0,
            }),
        );
        check("duplicate:0.1", Ok(Attack::Duplicate { fraction: 0.1 }));
        check(
            "noisy-labels:0.2,0.5",
            Ok(Attack::NoisyLabels {
                fraction: 0.2,
                share: 0.5,
            }),
        );
        check("noisy-labels:0.2", Err("wrong number of parameters"));
        check("noisy-labels:0.2,1.5", Err("share 1.5 is outside [0, 1]"));
        check("free-rider:0.2,-1", Err("must not be negative"));
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut delta = vec![1.0, -2.0];
        Behaviour::FreeRider { std: 0.0 }.apply(&mut delta, &mut rng);
        assert_eq!(delta, vec![0.0, 0.0]);
    }

    #[test]
    fn display_round_trips() {
        for a in [
            "label-flip:0.2",
            "noise:0.1,2",
            "scale:0.2,-10",
            "free-rider:0.1,0.5",
            "duplicate:0.3",
            "noisy-labels:0.2,0.5",
        ] {
            let attack: Attack = a.parse().unwrap();
            assert_eq!(attack.to_string().parse::<Attack>().unwrap(), attack);
        }
    }

    #[test]
    fn scaling_attackers_multiply_their_update_and_noise_attackers_replace_it() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut delta = vec![1.0, -2.0];
        Behaviour::Scale { factor: -3.0 }.apply(&mut delta, &mut rng);
        assert_eq!(delta, vec![-3.0, 6.0]);
        Behaviour::Honest.apply(&mut delta, &mut rng);
        assert_eq!(delta, vec![-3.0, 6.0]);
        let mut noise = vec![0.0; 10_000];
        Behaviour::Noise { std: 2.0 }.apply(&mut noise, &mut rng);
        let variance = noise.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / 1e4;
        assert!((variance - 4.0).abs() < 0.3, "{variance}");
    }
}
