/* placeholder (helper: run-time SIMD builds of elementwise loops) */
typedef int nb_elementwise_simd_placeholder;
