! Test driver for a generated UMAT (tests/test_abaqus.py).
!
! Usage: umat_driver MODE IN OUT, with IN holding the number of items on its
! first line and one item per line:
!
! - eval:     F row by row (9 numbers). OUT: STRESS(1:6), DDSDDE row by row
!             (36 numbers), SSE, PNEWDT. 3D call (NDI = 3, NSHR = 3, NTENS = 6).
! - plane:    as eval, but a plane-strain call (NDI = 3, NSHR = 1, NTENS = 4);
!             OUT: STRESS(1:4), DDSDDE (16 numbers), SSE, PNEWDT.
! - uniaxial: a stretch lambda. The driver solves STRESS(2) = STRESS(3) = 0 for
!             the lateral stretch t of F = diag(lambda, t, t) by Newton's method
!             with the UMAT's own DDSDDE, as a traction-free one-element test
!             would. OUT: lambda, t, STRESS(1:6), the number of Newton steps.
! - shear:    an amount of shear gamma, F = I + gamma e1 (x) e2.
!             OUT: gamma, STRESS(1:6).
program umat_driver
  implicit none
  character(len=512) :: mode, infile, outfile
  integer :: n, i, k, steps
  double precision :: f(3,3), stress(6), ddsdde(6,6), sse, pnewdt
  double precision :: lam, t, dt, slope, gam

  call get_command_argument(1, mode)
  call get_command_argument(2, infile)
  call get_command_argument(3, outfile)
  open (10, file=trim(infile), status='old', action='read')
  open (11, file=trim(outfile), status='replace', action='write')
  read (10, *) n
  do i = 1, n
    select case (trim(mode))
    case ('eval')
      read (10, *) (f(k, 1), f(k, 2), f(k, 3), k = 1, 3)
      call evaluate(f, 6, 3, stress, ddsdde, sse, pnewdt)
      write (11, '(44ES26.17E3)') stress, (ddsdde(k, 1:6), k = 1, 6), sse, pnewdt
    case ('plane')
      read (10, *) (f(k, 1), f(k, 2), f(k, 3), k = 1, 3)
      call evaluate(f, 4, 1, stress, ddsdde, sse, pnewdt)
      write (11, '(22ES26.17E3)') stress(1:4), (ddsdde(k, 1:4), k = 1, 4), sse, pnewdt
    case ('uniaxial')
      read (10, *) lam
      t = 1.0d0/sqrt(lam)
      steps = 0
      do k = 1, 50
        f = 0.0d0
        f(1, 1) = lam
        f(2, 2) = t
        f(3, 3) = t
        call evaluate(f, 6, 3, stress, ddsdde, sse, pnewdt)
        ! d sigma22 / dt for dD = diag(0, dt/t, dt/t), from the Jaumann tangent:
        ! d(J sigma) = J DDSDDE : dD and dJ/J = tr dD.
        slope = (ddsdde(2, 2) + ddsdde(2, 3) - 2.0d0*stress(2))/t
        dt = -stress(2)/slope
        t = t + dt
        steps = k
        if (abs(dt) <= 1.0d-15*t) exit
      end do
      f = 0.0d0
      f(1, 1) = lam
      f(2, 2) = t
      f(3, 3) = t
      call evaluate(f, 6, 3, stress, ddsdde, sse, pnewdt)
      write (11, '(8ES26.17E3, I6)') lam, t, stress, steps
    case ('shear')
      read (10, *) gam
      f = 0.0d0
      f(1, 1) = 1.0d0
      f(2, 2) = 1.0d0
      f(3, 3) = 1.0d0
      f(1, 2) = gam
      call evaluate(f, 6, 3, stress, ddsdde, sse, pnewdt)
      write (11, '(7ES26.17E3)') gam, stress
    case default
      write (*, *) 'unknown mode ', trim(mode)
      error stop 2
    end select
  end do
  close (10)
  close (11)
end program umat_driver

subroutine evaluate(f, ntens, nshr, stress, ddsdde, sse, pnewdt)
  implicit none
  integer, intent(in) :: ntens, nshr
  double precision, intent(in) :: f(3,3)
  double precision, intent(out) :: stress(6), ddsdde(6,6), sse, pnewdt
  character(len=80) :: cmname
  double precision :: s(ntens), d(ntens, ntens), statev(1), spd, scd, rpl
  double precision :: ddsddt(ntens), drplde(ntens), drpldt, stran(ntens)
  double precision :: dstran(ntens), time(2), dtime, temp, dtemp, predef(1)
  double precision :: dpred(1), props(1), coords(3), drot(3,3), celent
  double precision :: dfgrd0(3,3), dfgrd1(3,3)

  cmname = 'KLAX'
  s = huge(1.0d0)
  d = huge(1.0d0)
  statev = 0.0d0
  sse = huge(1.0d0)
  spd = 0.0d0
  scd = 0.0d0
  rpl = 0.0d0
  ddsddt = 0.0d0
  drplde = 0.0d0
  drpldt = 0.0d0
  stran = 0.0d0
  dstran = 0.0d0
  time = 0.0d0
  dtime = 1.0d0
  temp = 0.0d0
  dtemp = 0.0d0
  predef = 0.0d0
  dpred = 0.0d0
  props = 0.0d0
  coords = 0.0d0
  drot = 0.0d0
  drot(1, 1) = 1.0d0
  drot(2, 2) = 1.0d0
  drot(3, 3) = 1.0d0
  celent = 1.0d0
  pnewdt = 1.0d0
  dfgrd0 = f
  dfgrd1 = f
  call umat(s, statev, d, sse, spd, scd, rpl, ddsddt, drplde, drpldt, &
            stran, dstran, time, dtime, temp, dtemp, predef, dpred, cmname, &
            3, nshr, ntens, 0, props, 0, coords, drot, pnewdt, celent, &
            dfgrd0, dfgrd1, 1, 1, 0, 0, 1, 1)
  stress = 0.0d0
  ddsdde = 0.0d0
  stress(1:ntens) = s
  ddsdde(1:ntens, 1:ntens) = d
end subroutine evaluate

! Abaqus provides XIT (terminate the analysis); the driver stands in for it.
subroutine xit()
  implicit none
  write (*, *) 'XIT called'
  error stop 3
end subroutine xit
