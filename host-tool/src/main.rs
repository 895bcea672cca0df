fn main() {
    eprintln!("stagehand: not wired yet");
}
