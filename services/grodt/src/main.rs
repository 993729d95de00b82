//! `grodt`: the operator CLI and the all-in-one runner.

fn main() {
    println!("grodt: skeleton");
}
