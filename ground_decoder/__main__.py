from remac.ground_decoder.entry import decode_main

decode_main()
