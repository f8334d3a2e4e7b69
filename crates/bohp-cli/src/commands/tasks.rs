//! `bohp tasks generate|show`: task sets of the generated meta-task space as files.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bohp::rl::metatask::{NamedTask, TaskSet, draw, generate};

use crate::args::TasksCommand;

pub(crate) fn tasks_command(command: &TasksCommand) -> Result<ExitCode> {
    match command {
        TasksCommand::Generate(args) => {
            if args.count == 0 {
                bail!("--count: expected at least 1");
            }
            if args.count > 100_000 {
                bail!("--count: {} is more than 100000 tasks", args.count);
            }
            let mut tasks = generate(args.seed, args.count);
            let mut origin = format!(
                "bohp tasks generate --count {} --seed {}",
                args.count, args.seed
            );
            if args.named {
                tasks.extend(NamedTask::ALL.map(NamedTask::task));
                origin += " --named";
            }
            let set = TaskSet::new(origin, tasks);
            set.save(&args.out)?;
            println!("wrote {} tasks to {}", set.tasks.len(), args.out.display());
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Show(args) => {
            let set = if args.file == "named" {
                TaskSet::new(
                    "the named tasks",
                    NamedTask::ALL.map(NamedTask::task).to_vec(),
                )
            } else {
                TaskSet::load(Path::new(&args.file))?
            };
            for name in &args.only {
                if !set.tasks.iter().any(|t| &t.name == name) {
                    bail!("--only: no task named `{name}` in {}", args.file);
                }
            }
            if let Some(dir) = &args.draw {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("{}: cannot create", dir.display()))?;
            }
            let mut drawn = 0;
            for (i, task) in set.tasks.iter().enumerate() {
                if !args.only.is_empty() && !args.only.contains(&task.name) {
                    continue;
                }
                print!("{}", task.describe());
                match bohp::rl::metatask::check(task) {
                    Ok(()) => println!("  passes the generator's rejection tests"),
                    Err(why) => println!("  would be rejected by the generator: {why}"),
                }
                if let Some(dir) = &args.draw {
                    // The name, kept to letters, digits, '-' and '_' for a file name.
                    let stem = if task.name.is_empty() {
                        format!("task-{i}")
                    } else {
                        task.name
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                                    c
                                } else {
                                    '_'
                                }
                            })
                            .collect()
                    };
                    let path = dir.join(format!("{stem}.svg"));
                    bohp::run::write_atomic(&path, draw::svg(task).as_bytes())?;
                    drawn += 1;
                }
            }
            if let Some(dir) = &args.draw {
                println!("drew {drawn} state graphs in {}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
