from remac.ground_decoder.cli import decode_main

decode_main(prog_name="remac-decode")
