//! `stagehand`: everything is in the library; see `stagehand::cli`.

fn main() {
    stagehand::cli::main()
}
