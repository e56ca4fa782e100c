from remac.rover_encoder.cli import encode_main

encode_main(prog_name="remac-encode")
