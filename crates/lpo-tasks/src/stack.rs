//! The tiny stack language of the `program` task, and its interpreter.
//!
//! A program is a string of one-character instructions run on a stack of
//! integers that starts as `[x]`; the answer is the top of the stack at the end.
//!
//! | instruction | effect |
//! |---|---|
//! | `0`..`9` | push the digit |
//! | `+` `-` `*` | pop b, pop a, push a op b |
//! | `d` | duplicate the top |
//! | `s` | swap the top two |
//! | `x` | drop the top |
//! | `[` … `]` | loop: while the top is non-zero (not popped), run the body |
//!
//! Every executed instruction counts as a step; a program exceeding the step
//! limit is stopped with [`RunError::StepLimit`], so no program can hang.

use std::fmt;

/// Why a program produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// An instruction needed more values than the stack held.
    StackUnderflow {
        /// Byte offset of the instruction.
        at: usize,
    },
    /// A character that is not an instruction.
    UnknownInstruction {
        /// Byte offset of the character.
        at: usize,
        /// The character.
        ch: char,
    },
    /// `[` without `]` or the reverse.
    UnbalancedLoop {
        /// Byte offset of the unmatched bracket.
        at: usize,
    },
    /// Arithmetic left the 64-bit range.
    Overflow {
        /// Byte offset of the instruction.
        at: usize,
    },
    /// More than the allowed number of executed instructions.
    StepLimit {
        /// The limit that was hit.
        limit: usize,
    },
    /// The stack was empty at the end.
    EmptyResult,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::StackUnderflow { at } => write!(f, "stack underflow at {at}"),
            RunError::UnknownInstruction { at, ch } => {
                write!(f, "unknown instruction {ch:?} at {at}")
            }
            RunError::UnbalancedLoop { at } => write!(f, "unbalanced loop bracket at {at}"),
            RunError::Overflow { at } => write!(f, "arithmetic overflow at {at}"),
            RunError::StepLimit { limit } => write!(f, "stopped after {limit} steps"),
            RunError::EmptyResult => write!(f, "empty stack at the end"),
        }
    }
}

impl std::error::Error for RunError {}

/// Steps a program may execute on one input before it is stopped.
pub const DEFAULT_STEP_LIMIT: usize = 512;

/// Runs `program` on input `x` with at most `step_limit` executed instructions.
pub fn run(program: &str, x: i64, step_limit: usize) -> Result<i64, RunError> {
    let code: Vec<char> = program.chars().collect();
    let jumps = match_brackets(&code)?;
    let mut stack = vec![x];
    let mut pc = 0;
    let mut steps = 0;
    while pc < code.len() {
        steps += 1;
        if steps > step_limit {
            return Err(RunError::StepLimit { limit: step_limit });
        }
        let at = pc;
        match code[pc] {
            c @ '0'..='9' => stack.push(i64::from(c as u8 - b'0')),
            op @ ('+' | '-' | '*') => {
                let b = stack.pop().ok_or(RunError::StackUnderflow { at })?;
                let a = stack.pop().ok_or(RunError::StackUnderflow { at })?;
                let value = match op {
                    '+' => a.checked_add(b),
                    '-' => a.checked_sub(b),
                    _ => a.checked_mul(b),
                };
                stack.push(value.ok_or(RunError::Overflow { at })?);
            }
            'd' => {
                let top = *stack.last().ok_or(RunError::StackUnderflow { at })?;
                stack.push(top);
            }
            's' => {
                let n = stack.len();
                if n < 2 {
                    return Err(RunError::StackUnderflow { at });
                }
                stack.swap(n - 1, n - 2);
            }
            'x' => {
                stack.pop().ok_or(RunError::StackUnderflow { at })?;
            }
            '[' => {
                let top = *stack.last().ok_or(RunError::StackUnderflow { at })?;
                if top == 0 {
                    pc = jumps[pc];
                }
            }
            ']' => {
                let top = *stack.last().ok_or(RunError::StackUnderflow { at })?;
                if top != 0 {
                    pc = jumps[pc];
                }
            }
            ch => return Err(RunError::UnknownInstruction { at, ch }),
        }
        pc += 1;
    }
    stack.last().copied().ok_or(RunError::EmptyResult)
}

/// For each bracket, the index of its partner (other entries are unused).
fn match_brackets(code: &[char]) -> Result<Vec<usize>, RunError> {
    let mut jumps = vec![0; code.len()];
    let mut open = Vec::new();
    for (i, &c) in code.iter().enumerate() {
        match c {
            '[' => open.push(i),
            ']' => {
                let j = open.pop().ok_or(RunError::UnbalancedLoop { at: i })?;
                jumps[i] = j;
                jumps[j] = i;
            }
            _ => {}
        }
    }
    match open.pop() {
        Some(at) => Err(RunError::UnbalancedLoop { at }),
        None => Ok(jumps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_stack_ops() {
        assert_eq!(run("3*2+", 4, 100), Ok(14));
        assert_eq!(run("d*", 7, 100), Ok(49));
        assert_eq!(run("5s-", 2, 100), Ok(3));
        assert_eq!(run("9x", 2, 100), Ok(2));
        assert_eq!(run("", 8, 100), Ok(8));
    }

    #[test]
    fn loops_run_while_top_is_nonzero() {
        // A loop that decrements to zero terminates with 0 on top.
        assert_eq!(run("[1-]", 5, 100), Ok(0));
        // A loop skipped when the top is already zero.
        assert_eq!(run("[1-]7+", 0, 100), Ok(7));
    }

    #[test]
    fn runaway_programs_are_stopped() {
        // Top never reaches zero: 1 stays on top forever.
        assert_eq!(
            run("1[1+]", 0, DEFAULT_STEP_LIMIT),
            Err(RunError::StepLimit {
                limit: DEFAULT_STEP_LIMIT
            })
        );
        assert_eq!(run("[d]", 3, 50), Err(RunError::StepLimit { limit: 50 }));
    }

    #[test]
    fn malformed_programs_are_errors_not_panics() {
        assert_eq!(run("+", 1, 10), Err(RunError::StackUnderflow { at: 0 }));
        assert_eq!(run("1[", 1, 10), Err(RunError::UnbalancedLoop { at: 1 }));
        assert_eq!(run("]", 1, 10), Err(RunError::UnbalancedLoop { at: 0 }));
        assert_eq!(
            run("1q", 1, 10),
            Err(RunError::UnknownInstruction { at: 1, ch: 'q' })
        );
        assert_eq!(run("x", 1, 10), Err(RunError::EmptyResult));
        assert!(matches!(
            run("d*d*d*d*d*d*d*", 9, 100),
            Err(RunError::Overflow { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_program_terminates(program in "[0-9+*dsx\\[\\]-]{0,24}", x in -20i64..20) {
            // Never panics, returns (a watchdog fails the test instead of
            // hanging it), and a stopped program reports the limit it hit.
            let (tx, rx) = std::sync::mpsc::channel();
            let p = program.clone();
            std::thread::spawn(move || {
                let _ = tx.send(run(&p, x, 200));
            });
            let result = rx.recv_timeout(std::time::Duration::from_secs(10));
            proptest::prop_assert!(result.is_ok(), "{program:?} did not return within 10 s");
            if let Ok(Err(RunError::StepLimit { limit })) = result {
                proptest::prop_assert_eq!(limit, 200);
            }
        }
    }
}
