fn main() {
    eprintln!("stagehand-agent: not wired yet");
}
