//! Bad input to the public API is an `Error`, never a panic.

#![allow(clippy::print_stderr)]

use tb_kernels::{
    gemm, gemm_naive, gemm_packed, gemm_with_isa, Error, Isa, MatMut, MatRef, PackedB, Precision,
};

#[test]
fn views_reaching_past_their_slice_are_rejected() {
    let data = vec![0.0f32; 12];
    assert!(MatRef::new(&data, 3, 4, 4, 1).is_ok());
    assert!(matches!(
        MatRef::new(&data, 3, 5, 4, 1),
        Err(Error::ViewOutOfBounds {
            needed: 13,
            len: 12,
            ..
        })
    ));
    assert!(matches!(
        MatRef::row_major(&data, 4, 4),
        Err(Error::ViewOutOfBounds { .. })
    ));
    // A transposed view of a [4, 3] weight is 3 × 4 with strides (1, 3): fits.
    let t = MatRef::row_major(&data, 4, 3).unwrap().t();
    assert_eq!(
        (t.rows(), t.cols(), t.row_stride(), t.col_stride()),
        (3, 4, 1, 3)
    );
    assert_eq!(t.get(2, 3), Some(0.0));
    assert_eq!(t.get(3, 0), None);
    assert!(matches!(
        MatRef::new(&data, usize::MAX, 3, usize::MAX, 1),
        Err(Error::SizeOverflow)
    ));
    // Empty views need no data; stride-0 broadcasts are fine for reading.
    assert!(MatRef::<f32>::new(&[], 0, 7, 7, 1).is_ok());
    assert!(MatRef::new(&data[..1], 5, 5, 0, 0).is_ok());
}

#[test]
fn outputs_with_overlapping_or_missing_rows_are_rejected() {
    let mut data = vec![0.0f32; 12];
    assert!(matches!(
        MatMut::new(&mut data, 3, 4, 3),
        Err(Error::OverlappingOutputRows {
            row_stride: 3,
            cols: 4
        })
    ));
    assert!(matches!(
        MatMut::new(&mut data, 3, 4, 5),
        Err(Error::ViewOutOfBounds { needed: 14, .. })
    ));
    assert!(MatMut::new(&mut data, 1, 12, 0).is_ok());
    assert!(MatMut::new(&mut data, 2, 4, 8).is_ok());
}

#[test]
fn mismatched_shapes_are_errors_on_every_entry_point() {
    let a = vec![1.0f32; 6 * 4];
    let b = vec![1.0f32; 5 * 3];
    let mut c = vec![0.0f32; 6 * 3];
    let av = MatRef::row_major(&a, 6, 4).unwrap();
    let bv = MatRef::row_major(&b, 5, 3).unwrap();
    let inner = |r: tb_kernels::Result<()>| {
        assert!(
            matches!(
                r,
                Err(Error::ShapeMismatch {
                    what: "A's columns vs B's rows",
                    ..
                })
            ),
            "{r:?}"
        )
    };
    inner(gemm(
        av,
        bv,
        MatMut::row_major(&mut c, 6, 3).unwrap(),
        1.0,
        false,
        Precision::F32,
    ));
    inner(gemm_naive(
        av,
        bv,
        MatMut::row_major(&mut c, 6, 3).unwrap(),
        1.0,
        false,
    ));
    for isa in Isa::available() {
        for precision in [Precision::F32, Precision::Bf16] {
            let cv = MatMut::row_major(&mut c, 6, 3).unwrap();
            inner(gemm_with_isa(isa, av, bv, cv, 1.0, false, precision));
            let pb = PackedB::with_isa(isa, bv, precision).unwrap();
            inner(gemm_packed(
                av,
                &pb,
                MatMut::row_major(&mut c, 6, 3).unwrap(),
                1.0,
                true,
            ));
            // Right inner dimension, wrong C.
            let bv4 = MatRef::row_major(&b[..12], 4, 3).unwrap();
            let pb4 = PackedB::with_isa(isa, bv4, precision).unwrap();
            let r = gemm_packed(
                av,
                &pb4,
                MatMut::row_major(&mut c, 3, 6).unwrap(),
                1.0,
                false,
            );
            assert!(
                matches!(
                    r,
                    Err(Error::ShapeMismatch {
                        expected: (6, 3),
                        got: (3, 6),
                        ..
                    })
                ),
                "{r:?}"
            );
        }
    }
    assert!(c.iter().all(|&x| x == 0.0), "a rejected call wrote C");
}

#[test]
fn isa_names_parse_and_unknown_ones_are_errors() {
    for isa in Isa::ALL {
        assert_eq!(isa.name().parse::<Isa>(), Ok(isa));
        assert_eq!(isa.to_string(), isa.name());
    }
    assert_eq!("AVX512_BF16".parse::<Isa>(), Ok(Isa::Avx512Bf16));
    assert!(matches!(
        "avx9".parse::<Isa>(),
        Err(Error::UnknownIsa { .. })
    ));
    assert_eq!(Isa::resolve(None), Ok(Isa::detected()));
    assert_eq!(Isa::resolve(Some("auto")), Ok(Isa::detected()));
    assert_eq!(Isa::resolve(Some(" scalar ")), Ok(Isa::Scalar));
    assert!(matches!(
        Isa::resolve(Some("sse9")),
        Err(Error::UnknownIsa { .. })
    ));
    let available = Isa::available();
    assert_eq!(available.first(), Some(&Isa::Scalar));
    assert!(available.contains(&Isa::detected()));
    assert!(Isa::active().is_ok() || std::env::var(tb_kernels::ISA_ENV).is_ok());
}

#[test]
fn isas_this_cpu_lacks_are_errors_not_fallbacks() {
    let a = [1.0f32; 4];
    let mut c = [0.0f32; 4];
    let missing: Vec<Isa> = Isa::ALL.into_iter().filter(|i| !i.is_available()).collect();
    if missing.is_empty() {
        eprintln!("tb-kernels tests: this CPU has every ISA; the unavailable-ISA error is not run");
    }
    for isa in missing {
        let want = Err(Error::IsaUnavailable {
            requested: isa,
            detected: Isa::detected(),
        });
        assert_eq!(Isa::resolve(Some(isa.name())).map(|_| ()), want);
        let av = MatRef::row_major(&a, 2, 2).unwrap();
        assert_eq!(PackedB::with_isa(isa, av, Precision::F32).map(|_| ()), want);
        let cv = MatMut::row_major(&mut c, 2, 2).unwrap();
        assert_eq!(
            gemm_with_isa(isa, av, av, cv, 1.0, false, Precision::Bf16),
            want
        );
    }
}
