from remac.rover_encoder.entry import encode_main

encode_main()
