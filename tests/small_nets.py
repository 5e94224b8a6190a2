"""A narrow CNN for tests about what training does with its run folder (transactions, options):
the same layer kinds and names as the reference network, a fraction of its work, so that a test
epoch's validation over the 10000 test images costs a tenth of a second. ``Conv2D_1`` keeps the
reference's 32 filters (the convolution of one channel costs little): its training then runs
the fast-path kernels that ``make setup`` compiled, instead of compiling its own."""

from mapscope.cnn.spec import Conv, Dense, Flatten, NetSpec, Pool, validate

SMALL_CNN = validate(
    NetSpec(
        (
            Conv("Conv2D_1", 32),
            Pool("Max_Pool_1"),
            Conv("Conv2D_2", 8),
            Flatten("Flatten"),
            Dense("Dense_1", 10, "softmax"),
        )
    )
)
