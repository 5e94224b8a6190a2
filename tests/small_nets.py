"""A narrow CNN for tests about what training does with its run folder (transactions, options):
the same layer kinds and names as the reference network, a fraction of its work, so that a test
epoch's validation over the 10000 test images costs a tenth of a second."""

from mapscope.cnn.spec import Conv, Dense, Flatten, NetSpec, Pool, validate

SMALL_CNN = validate(
    NetSpec(
        (
            Conv("Conv2D_1", 4),
            Pool("Max_Pool_1"),
            Conv("Conv2D_2", 8),
            Flatten("Flatten"),
            Dense("Dense_1", 10, "softmax"),
        )
    )
)
