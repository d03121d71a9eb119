fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 4 && args[1] == "monitor" {
        strata::monitor::monitor_main(std::path::Path::new(&args[3]));
    }
}
